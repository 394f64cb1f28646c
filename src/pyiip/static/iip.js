/* pyiip viewer: IIP metadata, the pixel CRS and the IIP / IIIF tile layers for Leaflet.
 *
 * Geometry, as VisiOmatic v2 assumes it: Leaflet zoom z is IIP resolution z
 * (0 = smallest level), level z is floor(W / 2^(maxZoom - z)) wide, tiles are
 * numbered row-major and edge tiles come cropped. A LatLng is (y, x) in
 * full-resolution raster pixels, y down from the top edge; the raster holds
 * FITS row NAXIS2 at the top, so FITS (x, y) = (x + 0.5, NAXIS2 + 0.5 - y).
 */
(function (root) {
  "use strict";

  var METADATA_OBJECTS = ["IIP,1.0", "max-size", "tile-size", "resolution-number", "bits-per-channel",
    "min-max-sample-values", "subject"];

  /* The base of every request of one image: <endpoint>?FIF=<identifier>. */
  function baseUrl(endpoint, identifier) {
    return endpoint + "?FIF=" + encodeURIComponent(identifier).replace(/%2F/gi, "/");
  }

  function match(text, key, pattern) {
    return new RegExp(key + ":" + pattern).exec(text);
  }

  /* The OBJ reply parsed with VisiOmatic's patterns (unanchored, case-sensitive keys). */
  function parseMetadata(text) {
    var size = match(text, "Max-size", "(\\d+)\\s+(\\d+)");
    var tile = match(text, "Tile-size", "(\\d+)\\s+(\\d+)");
    var levels = match(text, "Resolution-number", "(\\d+)");
    if (!size || !tile || !levels) throw new Error("unexpected reply to the IIP metadata request");
    var bits = match(text, "Bits-per-channel", "(\\d+)");
    var minmax = match(text, "Min-Max-sample-values", "\\s*(.*)");
    var values = minmax ? minmax[1].trim().split(/\s+/).map(parseFloat) : [];
    var channels = [];
    for (var i = 0; i + 1 < values.length; i += 2) channels.push([values[i], values[i + 1]]);
    var subject = /subject\/(\d+):/.exec(text);
    var header = "";
    if (subject) {
      header = text.substr(subject.index + subject[0].length, parseInt(subject[1], 10));
      var eol = header.indexOf("\r\n");
      if (eol >= 0) header = header.substr(0, eol);
    }
    var iip = match(text, "IIP", "(\\d+\\.\\d*)");
    return {
      protocol: iip ? iip[1] : null,
      width: parseInt(size[1], 10),
      height: parseInt(size[2], 10),
      tileWidth: parseInt(tile[1], 10),
      tileHeight: parseInt(tile[2], 10),
      resolutions: parseInt(levels[1], 10),
      bits: bits ? parseInt(bits[1], 10) : 8,
      minmax: channels,
      header: header,
    };
  }

  /* One XHR for the metadata; calls back (error, metadata). */
  function loadMetadata(base, callback) {
    var url = base + METADATA_OBJECTS.map(function (o) { return "&obj=" + o; }).join("");
    var xhr = new XMLHttpRequest();
    xhr.open("GET", url, true);
    xhr.onload = function () {
      if (xhr.status !== 200) {
        callback(new Error("the IIP metadata request failed (HTTP " + xhr.status + ")"));
        return;
      }
      var meta;
      try {
        meta = parseMetadata(xhr.responseText);
      } catch (err) {
        callback(err);
        return;
      }
      callback(null, meta);
    };
    xhr.onerror = function () { callback(new Error("the IIP server cannot be reached")); };
    xhr.send();
  }

  /* Level geometry of a pyramid: sizes and tile grids per Leaflet zoom. */
  function Pyramid(meta) {
    this.width = meta.width;
    this.height = meta.height;
    this.tileWidth = meta.tileWidth;
    this.tileHeight = meta.tileHeight;
    this.maxZoom = meta.resolutions - 1;
    this.sizes = [];
    this.grids = [];
    for (var z = 0; z <= this.maxZoom; z++) {
      var f = Math.pow(2, this.maxZoom - z);
      var w = Math.max(1, Math.floor(this.width / f));
      var h = Math.max(1, Math.floor(this.height / f));
      this.sizes.push([w, h]);
      this.grids.push([Math.ceil(w / this.tileWidth), Math.ceil(h / this.tileHeight)]);
    }
  }

  /* [x, y, w, h] of tile (x, y) of zoom z, in that level's pixels, cropped at the edges. */
  Pyramid.prototype.tileRect = function (x, y, z) {
    var size = this.sizes[z];
    var x0 = x * this.tileWidth;
    var y0 = y * this.tileHeight;
    return [x0, y0, Math.min(this.tileWidth, size[0] - x0), Math.min(this.tileHeight, size[1] - y0)];
  };

  Pyramid.prototype.valid = function (x, y, z) {
    var grid = this.grids[z];
    return !!grid && x >= 0 && y >= 0 && x < grid[0] && y < grid[1];
  };

  /* CRS.Simple scaled so that zoom maxZoom is one screen pixel per raster pixel, y down. */
  function pixelCRS(pyramid) {
    var s = 1 / Math.pow(2, pyramid.maxZoom);
    return L.extend({}, L.CRS.Simple, { transformation: new L.Transformation(s, 0, s, 0) });
  }

  /* Tiles of one pyramid; subclasses say how a tile is addressed. */
  var PyramidLayer = L.TileLayer.extend({
    initialize: function (pyramid, options) {
      this.pyramid = pyramid;
      L.TileLayer.prototype.initialize.call(this, "", L.extend({
        tileSize: L.point(pyramid.tileWidth, pyramid.tileHeight),
        minZoom: 0,
        maxNativeZoom: pyramid.maxZoom,
        maxZoom: pyramid.maxZoom + 2,
        noWrap: true,
        keepBuffer: 1,
        updateWhenZooming: false,
      }, options));
    },

    getTileUrl: function () { return ""; },

    createTile: function (coords, done) {
      var tile = L.TileLayer.prototype.createTile.call(this, coords, done);
      var rect = this.pyramid.tileRect(coords.x, coords.y, coords.z);
      var grid = this.pyramid.grids[coords.z];
      /* cropped size, and whether a neighbour follows on the right / below */
      tile.dataset.crop = [rect[2], rect[3], coords.x + 1 < grid[0] ? 1 : 0, coords.y + 1 < grid[1] ? 1 : 0].join(",");
      return tile;
    },

    /* Edge tiles are smaller than the tile size: give them their own size (scaled when over-zoomed).
     * Inner tiles overlap their right and bottom neighbours by one pixel, so that no hairline of
     * background shows between anti-aliased tile edges at fractional zooms. */
    _initTile: function (tile) {
      L.TileLayer.prototype._initTile.call(this, tile);
      var crop = tile.dataset.crop && tile.dataset.crop.split(",").map(Number);
      if (!crop) return;
      var size = this.getTileSize();
      tile.style.width = (size.x * crop[0]) / this.pyramid.tileWidth + crop[2] + "px";
      tile.style.height = (size.y * crop[1]) / this.pyramid.tileHeight + crop[3] + "px";
    },

    _isValidTile: function (coords) {
      return this.pyramid.valid(coords.x, coords.y, coords.z);
    },
  });

  /* IIP tiles: <base>[&display settings]&JTL=z,x+y*gridX. */
  var IIPLayer = PyramidLayer.extend({
    initialize: function (pyramid, base, settings, options) {
      this.base = base;
      this.settings = settings || function () { return ""; };
      PyramidLayer.prototype.initialize.call(this, pyramid, options);
    },

    getTileUrl: function (coords) {
      var grid = this.pyramid.grids[coords.z];
      return this.base + this.settings() + "&JTL=" + coords.z + "," + (coords.x + coords.y * grid[0]);
    },
  });

  /* IIIF Image API 3 tiles: full-resolution region, output width of the level's tile. */
  var IIIFLayer = PyramidLayer.extend({
    initialize: function (pyramid, service, options) {
      this.service = service;
      PyramidLayer.prototype.initialize.call(this, pyramid, options);
    },

    getTileUrl: function (coords) {
      var p = this.pyramid;
      var f = Math.pow(2, p.maxZoom - coords.z);
      var rect = p.tileRect(coords.x, coords.y, coords.z);
      var x = rect[0] * f;
      var y = rect[1] * f;
      var w = Math.min(p.width - x, rect[2] * f);
      var h = Math.min(p.height - y, rect[3] * f);
      return this.service + "/" + [x, y, w, h].join(",") + "/" + rect[2] + ",/0/default.jpg";
    },
  });

  root.PyiipIIP = {
    baseUrl: baseUrl,
    parseMetadata: parseMetadata,
    loadMetadata: loadMetadata,
    Pyramid: Pyramid,
    pixelCRS: pixelCRS,
    IIPLayer: IIPLayer,
    IIIFLayer: IIIFLayer,
  };
})(window);
