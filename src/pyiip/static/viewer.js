/* pyiip viewer: the image list, a Leaflet deep-zoom view over IIP (or IIIF), display controls,
 * the FITS header and the sky coordinates under the pointer. State for tests: window.pyiipViewer. */
(function () {
  "use strict";

  var body = document.body;
  var mapElement = document.getElementById("map");
  var endpoint = body.dataset.iip || "/fcgi-bin/iipsrv.fcgi";
  var COLORMAPS = ["grey", "jet", "cold", "hot"];
  var viewer = (window.pyiipViewer = { generation: 0, loaded: 0, errors: 0 });

  if (!window.L || !window.PyiipIIP || !window.PyiipWCS) {
    if (!mapElement.textContent.trim()) mapElement.textContent = "The viewer's scripts did not load.";
    return;
  }
  var IIP = window.PyiipIIP;
  var WCS = window.PyiipWCS;

  /* ------------------------------------------------------------------ small DOM helpers */

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === undefined || value === null || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function section(id) {
    var node = document.getElementById(id);
    node.textContent = "";
    return node;
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function format(value) {
    return Number.isFinite(value) ? String(+value.toPrecision(7)) : "";
  }

  /* ------------------------------------------------------------------ display state -> IIP query */

  function hexToRgb(hex) {
    var n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255].map(function (v) { return v / 255; });
  }

  function defaultColors(count) {
    if (count === 1) return ["#ffffff"];
    var colors = [];
    for (var c = 0; c < count; c++) {
      var hue = 240 * (1 - c / (count - 1)); /* blue (short wavelengths) to red (long) */
      var x = 1 - Math.abs(((hue / 60) % 2) - 1);
      var rgb = hue < 60 ? [1, x, 0] : hue < 120 ? [x, 1, 0] : hue < 180 ? [0, 1, x] : [0, x, 1];
      colors.push("#" + rgb.map(function (v) { return Math.round(v * 255).toString(16).padStart(2, "0"); }).join(""));
    }
    return colors;
  }

  function round(value) {
    return String(+value.toFixed(6));
  }

  /* CTW: one row per output channel (R, G, B), one coefficient per input channel. */
  function twist(state) {
    var rows = [[], [], []];
    var count = state.minmax.length;
    if (state.mode !== "color") {
      for (var c = 0; c <= state.mode; c++) rows.forEach(function (row) { row.push(c === state.mode ? 1 : 0); });
    } else {
      for (var k = 0; k < count; k++) {
        var rgb = hexToRgb(state.colors[k]).map(function (v) { return Math.pow(v, state.gamma); });
        var lum = (rgb[0] + rgb[1] + rgb[2]) / 3;
        var s = state.saturation / 3;
        rows[0].push(lum + s * (2 * rgb[0] - rgb[1] - rgb[2]));
        rows[1].push(lum + s * (2 * rgb[1] - rgb[0] - rgb[2]));
        rows[2].push(lum + s * (2 * rgb[2] - rgb[0] - rgb[1]));
      }
    }
    return rows.map(function (row) { return row.map(round).join(","); }).join(";");
  }

  /* The display parameters of a tile URL, in VisiOmatic's order, defaults left out (CTW always sent). */
  function displayQuery(state) {
    var query = "";
    if (state.cmap !== "grey") query += "&CMP=" + state.cmap;
    if (state.invert) query += "&INV";
    if (state.contrast !== 1) query += "&CNT=" + state.contrast;
    if (state.gamma !== 1) query += "&GAM=" + (1 / state.gamma).toFixed(4);
    state.minmax.forEach(function (range, c) {
      var server = state.defaults[c];
      if (range[0] !== server[0] || range[1] !== server[1]) query += "&MINMAX=" + (c + 1) + ":" + range[0] + "," + range[1];
    });
    return query + "&CTW=" + twist(state);
  }

  function initialState(meta, names) {
    var count = Math.max(1, meta.minmax.length);
    var defaults = [];
    for (var c = 0; c < count; c++) defaults.push(meta.minmax[c] ? meta.minmax[c].slice() : [0, 1]);
    return {
      mode: count === 1 ? 0 : "color",
      cmap: "grey",
      invert: false,
      gamma: meta.bits >= 32 ? 2.2 : 1,
      contrast: 1,
      saturation: 1,
      defaults: defaults,
      minmax: defaults.map(function (r) { return r.slice(); }),
      colors: defaultColors(count),
      names: names,
    };
  }

  /* ------------------------------------------------------------------ the map */

  var map = null;
  var shown = null; /* the layer on screen */
  var pending = null; /* its replacement, shown once its tiles are in */
  var image = null; /* what is open: identifier, metadata, pyramid, wcs, state */
  var opening = null; /* the latest metadata request: older replies are ignored */

  function makeLayer() {
    if (image.protocol === "iiif") {
      return new IIP.IIIFLayer(image.pyramid, "/iiif/3/" + encodeURIComponent(image.identifier));
    }
    var settings = image.state ? function () { return displayQuery(image.state); } : null;
    return new IIP.IIPLayer(image.pyramid, image.base, settings);
  }

  function watch(layer) {
    layer.on("loading", function () {
      if (layer === shown || layer === pending) mapElement.dataset.state = "loading";
    });
    layer.on("load", function () {
      if (layer === pending) {
        if (shown) map.removeLayer(shown);
        shown = layer;
        pending = null;
      }
      if (layer === shown) {
        viewer.loaded = layer.generation;
        mapElement.dataset.state = "loaded";
      }
    });
    layer.on("tileerror", function () { viewer.errors += 1; });
  }

  /* Replace the tiles, keeping the current ones on screen until the new ones have arrived. */
  function refresh() {
    if (!map) return;
    var layer = makeLayer();
    layer.generation = ++viewer.generation;
    if (pending) map.removeLayer(pending);
    pending = layer;
    watch(layer);
    layer.addTo(map);
  }
  var refreshSoon = debounce(refresh, 150);

  function tileUrls() {
    if (!shown) return [];
    return Array.prototype.map.call(shown.getContainer().querySelectorAll("img.leaflet-tile-loaded"), function (img) {
      return img.src;
    });
  }

  /* ------------------------------------------------------------------ coordinates readout */

  var Readout = L.Control.extend({
    options: { position: "bottomleft" },
    onAdd: function () {
      this.node = el("div", { id: "coords", class: "coords", "aria-live": "off" });
      L.DomEvent.disableClickPropagation(this.node);
      return this.node;
    },
    /* Show the sky and FITS pixel coordinates of a map point. */
    show: function (latlng) {
      var x = latlng.lng + 0.5;
      var y = image.naxis2 + 0.5 - latlng.lat;
      var node = this.node;
      node.dataset.x = x;
      node.dataset.y = y;
      var lines = [];
      var world = image.wcs ? image.wcs.pixelToWorld(x, y) : null;
      if (world) {
        node.dataset.ra = world[0];
        node.dataset.dec = world[1];
        if (image.wcs.equatorial) {
          lines.push("α " + WCS.hms(world[0]) + "  δ " + WCS.dms(world[1]));
        }
        lines.push(image.wcs.lonType + " " + world[0].toFixed(6) + "°  " + image.wcs.latType + " " + world[1].toFixed(6) + "°");
      } else {
        delete node.dataset.ra;
        delete node.dataset.dec;
        if (image.wcsProblem) lines.push("no sky coordinates: " + image.wcsProblem + " not supported");
      }
      lines.push("x " + x.toFixed(1) + "  y " + y.toFixed(1));
      node.textContent = lines.join("\n");
    },
  });

  /* ------------------------------------------------------------------ pixel values readout */

  /* The raw samples under the pointer (IIP VAL at the FITS pixel): one request once the pointer rests
   * on a pixel, none while it moves; a reply for a pixel the pointer has left is dropped. */
  var Values = L.Control.extend({
    options: { position: "bottomleft" },
    onAdd: function () {
      this.node = el("div", { id: "values", class: "coords", "aria-live": "off" });
      L.DomEvent.disableClickPropagation(this.node);
      this.asked = null;
      this.askSoon = debounce(this.ask.bind(this), 250);
      return this.node;
    },
    point: function (latlng) {
      var x = Math.floor(latlng.lng) + 1;
      var y = image.meta.height - Math.floor(latlng.lat);
      if (x < 1 || y < 1 || x > image.meta.width || y > image.meta.height) {
        this.asked = null;
        this.node.textContent = "";
        return;
      }
      if (this.asked && this.asked.x === x && this.asked.y === y) return;
      this.asked = { x: x, y: y };
      this.askSoon();
    },
    ask: function () {
      var at = this.asked;
      if (!at) return;
      var self = this;
      var xhr = new XMLHttpRequest();
      xhr.open("GET", image.base + "&VAL=" + at.x + "," + at.y, true);
      xhr.onload = function () {
        if (self.asked !== at || xhr.status !== 200) return;
        var values = JSON.parse(xhr.responseText).values;
        var names = image.state ? image.state.names : [];
        self.node.dataset.x = at.x;
        self.node.dataset.y = at.y;
        self.node.dataset.values = JSON.stringify(values);
        self.node.textContent = values.map(function (v, c) {
          return (names[c] || "#" + (c + 1)) + " " + (v === null ? "—" : format(v));
        }).join("  ");
      };
      xhr.send();
    },
  });

  /* ------------------------------------------------------------------ panels */

  function showInfo() {
    var meta = image.meta;
    var iiif = "/iiif/3/" + encodeURIComponent(image.identifier) + "/info.json";
    var items = [
      ["size", meta.width + " × " + meta.height + " px"],
      ["pyramid", meta.resolutions + " levels of " + meta.tileWidth + " × " + meta.tileHeight + " tiles"],
      ["samples", image.state ? image.state.minmax.length + " channel(s), " + meta.bits + " bits" : meta.bits + " bits"],
    ];
    if (image.wcs) items.push(["WCS", image.wcs.projection + ", " + image.wcs.pixelScale.toFixed(3) + "″/pixel"]);
    if (image.wcsProblem) items.push(["WCS", image.wcsProblem + ": not supported by this viewer, no sky coordinates"]);
    var node = section("info");
    node.appendChild(el("h2", { text: image.identifier }));
    var list = el("dl");
    items.forEach(function (item) {
      list.appendChild(el("dt", { text: item[0] }));
      list.appendChild(el("dd", { text: item[1] }));
    });
    node.appendChild(list);
    node.appendChild(el("p", { class: "note" }, [
      el("a", { href: image.base + "&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number&OBJ=Bits-per-channel&OBJ=Min-Max-sample-values", text: "IIP metadata" }),
      " · ",
      el("a", { href: iiif, text: "IIIF info.json" }),
    ]));
  }

  function showHeader() {
    var node = section("header");
    var parsed = image.header;
    if (!image.meta.header) return;
    var fits = parsed.cards.length > 1 && Object.keys(parsed.keys).length > 0;
    var text = fits ? parsed.cards.join("\n") : image.meta.header;
    var label = fits ? "FITS header (" + parsed.cards.length + " cards)" : "Description";
    node.appendChild(el("details", { id: "fits", open: window.innerWidth > 700 ? true : null }, [
      el("summary", { text: label }),
      el("pre", { id: "fits-header", text: text }),
    ]));
  }

  function control(label, input, extra) {
    return el("div", { class: "row" }, [el("label", { for: input.id, text: label }), input].concat(extra || []));
  }

  function slider(id, min, max, step, value, onChange) {
    var output = el("output", { for: id, text: format(value) });
    var input = el("input", { id: id, type: "range", min: min, max: max, step: step, value: value });
    input.addEventListener("input", function () {
      output.textContent = format(+input.value);
      onChange(+input.value);
      refreshSoon();
    });
    return [input, output];
  }

  function showAstroControls() {
    var state = image.state;
    var node = section("controls");
    node.appendChild(el("h2", { text: "Display" }));

    var mode = el("select", { id: "mode" });
    if (state.minmax.length > 1) mode.appendChild(el("option", { value: "color", text: "colour composite" }));
    state.minmax.forEach(function (_, c) {
      mode.appendChild(el("option", { value: String(c), text: "channel " + (c + 1) + ": " + state.names[c] }));
    });
    mode.value = String(state.mode);

    var cmap = el("select", { id: "cmap" });
    COLORMAPS.forEach(function (name) { cmap.appendChild(el("option", { value: name, text: name })); });
    var invert = el("input", { id: "invert", type: "checkbox" });

    function syncMode() {
      node.classList.toggle("mono", state.mode !== "color");
      cmap.value = state.cmap;
    }
    mode.addEventListener("change", function () {
      state.mode = mode.value === "color" ? "color" : +mode.value;
      if (state.mode === "color") state.cmap = "grey";
      syncMode();
      refresh();
    });
    cmap.addEventListener("change", function () {
      state.cmap = cmap.value;
      if (state.cmap !== "grey" && state.mode === "color") { /* colormaps apply to one channel */
        state.mode = 0;
        mode.value = "0";
      }
      syncMode();
      refresh();
    });
    invert.addEventListener("change", function () {
      state.invert = invert.checked;
      refresh();
    });

    node.appendChild(control("Mode", mode));
    node.appendChild(control("Colormap", cmap, [el("label", { class: "inline" }, [invert, " invert"])]));
    var gammaParts = slider("gamma", 0.5, 5, 0.05, state.gamma, function (v) { state.gamma = v; });
    node.appendChild(control("Gamma", gammaParts[0], [gammaParts[1]]));
    var contrastParts = slider("contrast", 0, 10, 0.05, state.contrast, function (v) { state.contrast = v; });
    node.appendChild(control("Contrast", contrastParts[0], [contrastParts[1]]));
    var saturationParts = slider("saturation", 0, 3, 0.05, state.saturation, function (v) { state.saturation = v; });
    var saturation = control("Saturation", saturationParts[0], [saturationParts[1]]);
    saturation.classList.add("color-only");
    node.appendChild(saturation);

    var table = el("table", { id: "channels" }, [
      el("thead", {}, [el("tr", {}, [el("th", { class: "color-only", text: "mix" }), el("th", { text: "channel" }),
        el("th", { text: "min" }), el("th", { text: "max" })])]),
    ]);
    var rows = el("tbody");
    state.minmax.forEach(function (range, c) {
      var color = el("input", { type: "color", value: state.colors[c], "aria-label": "colour of channel " + (c + 1) });
      color.addEventListener("input", function () {
        state.colors[c] = color.value;
        refreshSoon();
      });
      function bound(which) {
        var input = el("input", { type: "number", step: "any", class: which ? "max" : "min", value: format(range[which]),
          "aria-label": (which ? "maximum" : "minimum") + " of channel " + (c + 1) });
        input.addEventListener("change", function () {
          var value = parseFloat(input.value);
          state.minmax[c][which] = Number.isFinite(value) ? value : state.defaults[c][which];
          refresh();
        });
        return input;
      }
      rows.appendChild(el("tr", { "data-channel": c }, [el("td", { class: "color-only" }, [color]),
        el("td", { text: state.names[c] }), el("td", {}, [bound(0)]), el("td", {}, [bound(1)])]));
    });
    table.appendChild(rows);
    node.appendChild(table);
    node.appendChild(el("button", { id: "reset", type: "button", text: "Reset", onclick: function () {
      image.state = initialState(image.meta, state.names);
      showAstroControls();
      refresh();
    } }));
    syncMode();
  }

  function showTileControls() {
    var node = section("controls");
    node.appendChild(el("h2", { text: "Tiles" }));
    var row = el("div", { class: "row choices", role: "radiogroup" });
    [["iip", "IIP (JTL)"], ["iiif", "IIIF Image API 3"]].forEach(function (choice) {
      var input = el("input", { type: "radio", name: "protocol", id: "protocol-" + choice[0], value: choice[0],
        checked: image.protocol === choice[0] });
      input.addEventListener("change", function () {
        image.protocol = input.value;
        var url = new URL(location.href);
        if (url.searchParams.has("image")) {
          url.searchParams.set("tiles", image.protocol);
          history.replaceState(null, "", url.pathname + url.search);
        }
        refresh();
      });
      row.appendChild(el("label", { class: "inline" }, [input, " " + choice[1]]));
    });
    node.appendChild(row);
  }

  /* ------------------------------------------------------------------ opening an image */

  function listLinks() {
    return Array.prototype.slice.call(document.querySelectorAll("#images a.image"));
  }

  function requested() {
    var params = new URLSearchParams(location.search);
    var first = listLinks()[0];
    return { identifier: params.get("image") || (first ? first.textContent : null), tiles: params.get("tiles") };
  }

  function fail(message) {
    if (map) { map.remove(); map = null; }
    mapElement.textContent = "";
    mapElement.appendChild(el("p", { class: "error", text: message }));
    mapElement.dataset.state = "error";
  }

  function open(identifier, tiles) {
    listLinks().forEach(function (a) { a.classList.toggle("active", a.textContent === identifier); });
    document.title = identifier + " · pyiip";
    mapElement.dataset.state = "metadata";
    var base = IIP.baseUrl(endpoint, identifier);
    var ticket = (opening = {});
    IIP.loadMetadata(base, function (error, meta) {
      if (ticket !== opening) return; /* another image was asked for meanwhile */
      if (error) return fail(identifier + ": " + error.message);
      var header = WCS.parseHeader(meta.header);
      var names = [];
      for (var c = 0; c < Math.max(1, meta.minmax.length); c++) {
        var key = "CHAN" + String(c + 1).padStart(4, "0");
        names.push(header.keys[key] !== undefined ? String(header.keys[key]) : "#" + (c + 1));
      }
      var astro = meta.bits > 8;
      image = {
        identifier: identifier,
        base: base,
        meta: meta,
        header: header,
        pyramid: new IIP.Pyramid(meta),
        wcs: WCS.fromHeader(header.keys),
        wcsProblem: WCS.unsupported(header.keys),
        naxis2: typeof header.keys.NAXIS2 === "number" ? header.keys.NAXIS2 : meta.height,
        state: astro ? initialState(meta, names) : null,
        protocol: !astro && tiles === "iiif" ? "iiif" : "iip",
      };
      viewer.image = image;
      show();
    });
  }

  function show() {
    if (map) map.remove();
    mapElement.textContent = "";
    shown = pending = null;
    var p = image.pyramid;
    map = viewer.map = L.map(mapElement, {
      crs: IIP.pixelCRS(p),
      minZoom: 0,
      maxZoom: p.maxZoom + 2,
      attributionControl: false,
      zoomSnap: 0.25,
      fadeAnimation: true,
    });
    var bounds = L.latLngBounds([0, 0], [p.height, p.width]);
    map.setMaxBounds(bounds.pad(0.5));
    map.fitBounds(bounds);
    var readout = (viewer.readout = new Readout());
    readout.addTo(map);
    readout.show(map.getCenter());
    var pointer = false;
    var values = (viewer.values = new Values());
    values.addTo(map);
    map.on("mousemove", function (event) {
      pointer = true;
      readout.show(event.latlng);
      values.point(event.latlng);
    });
    map.on("mouseout", function () { pointer = false; });
    map.on("move", function () { if (!pointer) readout.show(map.getCenter()); });
    map.on("zoomend", function () { mapElement.dataset.zoom = map.getZoom(); });
    mapElement.dataset.zoom = map.getZoom();
    if (image.state) showAstroControls();
    else showTileControls();
    showInfo();
    showHeader();
    refresh();
  }

  /* ------------------------------------------------------------------ page wiring */

  document.getElementById("images").addEventListener("click", function (event) {
    var link = event.target.closest("a.image");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button) return;
    event.preventDefault();
    history.pushState(null, "", link.getAttribute("href"));
    open(link.textContent, null);
    if (window.innerWidth <= 700) togglePanel(false);
  });
  window.addEventListener("popstate", function () {
    var want = requested();
    if (want.identifier) open(want.identifier, want.tiles);
  });

  var toggle = document.getElementById("panel-toggle");
  function togglePanel(open) {
    body.classList.toggle("panel-closed", !open);
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "Hide" : "Panel";
    if (map) map.invalidateSize();
  }
  toggle.addEventListener("click", function () { togglePanel(body.classList.contains("panel-closed")); });

  /* True once the shown tiles are all in and faded in (what a screenshot should wait for). */
  function settled() {
    if (!shown || pending || mapElement.dataset.state !== "loaded") return false;
    var tiles = shown.getContainer().querySelectorAll("img.leaflet-tile");
    return tiles.length > 0 && Array.prototype.every.call(tiles, function (img) {
      return img.classList.contains("leaflet-tile-loaded") && getComputedStyle(img).opacity === "1";
    });
  }

  viewer.tileUrls = tileUrls;
  viewer.settled = settled;
  viewer.displayQuery = function () { return image && image.state ? displayQuery(image.state) : ""; };
  viewer.open = open;

  var first = requested();
  if (first.identifier) open(first.identifier, first.tiles);
  else fail("No images under the image root.");
})();
