/* pyiip viewer: FITS celestial WCS (zenithal projections) from a FITS header.
 *
 * Pixel -> world for CD-matrix (or CDELT/PC/CROTA2) headers with the zenithal
 * projections TAN, SIN, ARC, ZEA and STG (Calabretta & Greisen 2002, A&A 395,
 * 1077). Coordinates are FITS 1-based pixels; angles are degrees.
 */
(function (root) {
  "use strict";

  var D2R = Math.PI / 180;
  var R2D = 180 / Math.PI;

  /* FITS header text (80-character cards) -> {KEY: value}; strings unquoted, numbers parsed. */
  function parseHeader(text) {
    var cards = [];
    var keys = {};
    var clean = text || "";
    if (clean.indexOf("\n") >= 0) { /* tolerate newline-separated cards */
      clean = clean.split(/\r?\n/).map(function (line) { return line.padEnd(80).substr(0, 80); }).join("");
    }
    for (var i = 0; i + 8 <= clean.length; i += 80) {
      var card = clean.substr(i, 80);
      var key = card.substr(0, 8).trim();
      if (key === "END") break;
      if (!card.trim()) continue;
      cards.push(card.replace(/\s+$/, ""));
      if (card.substr(8, 2) !== "= " || !key) continue;
      var value = card.substr(10);
      var quoted = /^\s*'((?:[^']|'')*)'/.exec(value);
      if (quoted) {
        keys[key] = quoted[1].replace(/''/g, "'").replace(/\s+$/, "");
        continue;
      }
      var raw = value.split("/")[0].trim();
      if (raw === "T" || raw === "F") {
        keys[key] = raw === "T";
      } else if (/^[-+]?(\d+\.?\d*|\.\d+)([eEdD][-+]?\d+)?$/.test(raw)) {
        keys[key] = parseFloat(raw.replace(/[dD]/, "e"));
      }
    }
    return { cards: cards, keys: keys };
  }

  var ZENITHAL = {
    /* native latitude theta (deg) from the intermediate radius r (deg) */
    TAN: function (r) { return Math.atan2(R2D, r) * R2D; },
    SIN: function (r) { return r * D2R > 1 ? NaN : Math.acos(r * D2R) * R2D; },
    ARC: function (r) { return 90 - r; },
    ZEA: function (r) { return Math.abs(r * D2R / 2) > 1 ? NaN : 90 - 2 * Math.asin(r * D2R / 2) * R2D; },
    STG: function (r) { return 90 - 2 * Math.atan(r * D2R / 2) * R2D; },
  };

  function num(keys, name, fallback) {
    return typeof keys[name] === "number" ? keys[name] : fallback;
  }

  /* The linear part: CDi_j if present, otherwise CDELTi x PCi_j, otherwise CDELTi with CROTA2. */
  function linearMatrix(keys) {
    if (["CD1_1", "CD1_2", "CD2_1", "CD2_2"].some(function (k) { return k in keys; })) {
      return [[num(keys, "CD1_1", 0), num(keys, "CD1_2", 0)], [num(keys, "CD2_1", 0), num(keys, "CD2_2", 0)]];
    }
    var c1 = num(keys, "CDELT1", NaN);
    var c2 = num(keys, "CDELT2", NaN);
    if (!isFinite(c1) || !isFinite(c2)) return null;
    if ("PC1_1" in keys || "PC2_2" in keys || "PC1_2" in keys || "PC2_1" in keys) {
      return [[c1 * num(keys, "PC1_1", 1), c1 * num(keys, "PC1_2", 0)],
              [c2 * num(keys, "PC2_1", 0), c2 * num(keys, "PC2_2", 1)]];
    }
    var rho = num(keys, "CROTA2", 0) * D2R;
    return [[c1 * Math.cos(rho), -c2 * Math.sin(rho)], [c1 * Math.sin(rho), c2 * Math.cos(rho)]];
  }

  /* A WCS from a parsed header, or null when the header has no usable celestial zenithal WCS. */
  function WCS(keys) {
    var ctype1 = String(keys.CTYPE1 || "");
    var ctype2 = String(keys.CTYPE2 || "");
    var code = ctype1.substr(5, 3);
    if (!ZENITHAL[code] || ctype2.substr(5, 3) !== code) return null;
    var cd = linearMatrix(keys);
    if (!cd) return null;
    this.projection = code;
    this.lonType = ctype1.substr(0, 4).replace(/-+$/, "");
    this.latType = ctype2.substr(0, 4).replace(/-+$/, "");
    this.crpix = [num(keys, "CRPIX1", 0), num(keys, "CRPIX2", 0)];
    this.crval = [num(keys, "CRVAL1", 0), num(keys, "CRVAL2", 0)];
    this.cd = cd;
    this.lonpole = num(keys, "LONPOLE", this.crval[1] >= 90 ? 0 : 180);
    var det = cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0];
    this.pixelScale = Math.sqrt(Math.abs(det)) * 3600; /* arcsec per pixel */
    this.equatorial = this.lonType === "RA";
  }

  /* FITS 1-based pixel (x, y) -> [longitude, latitude] in degrees. */
  WCS.prototype.pixelToWorld = function (x, y) {
    var dx = x - this.crpix[0];
    var dy = y - this.crpix[1];
    var cd = this.cd;
    var ix = cd[0][0] * dx + cd[0][1] * dy;
    var iy = cd[1][0] * dx + cd[1][1] * dy;
    var r = Math.sqrt(ix * ix + iy * iy);
    var phi = r === 0 ? 0 : Math.atan2(ix, -iy);
    var theta = ZENITHAL[this.projection](r) * D2R;
    if (!isFinite(theta)) return null;
    var dp = this.crval[1] * D2R;
    var dphi = phi - this.lonpole * D2R;
    var sinDec = Math.sin(theta) * Math.sin(dp) + Math.cos(theta) * Math.cos(dp) * Math.cos(dphi);
    var dec = Math.asin(Math.max(-1, Math.min(1, sinDec))) * R2D;
    var ra = this.crval[0] + Math.atan2(
      -Math.cos(theta) * Math.sin(dphi),
      Math.sin(theta) * Math.cos(dp) - Math.cos(theta) * Math.sin(dp) * Math.cos(dphi)) * R2D;
    ra = ((ra % 360) + 360) % 360;
    return [ra, dec];
  };

  function sexagesimal(value, hours, decimals) {
    var sign = value < 0 ? "-" : hours ? "" : "+";
    var v = Math.abs(hours ? value / 15 : value);
    var scale = Math.pow(10, decimals);
    var total = Math.round(v * 3600 * scale); /* in units of 10^-decimals seconds */
    var s = total % (60 * scale);
    var m = Math.floor(total / (60 * scale)) % 60;
    var d = Math.floor(total / (3600 * scale));
    function pad(n, w) { return String(n).padStart(w, "0"); }
    var sec = pad(Math.floor(s / scale), 2) + (decimals ? "." + pad(s % scale, decimals) : "");
    return sign + pad(d, 2) + ":" + pad(m, 2) + ":" + sec;
  }

  root.PyiipWCS = {
    parseHeader: parseHeader,
    fromHeader: function (keys) { var w = new WCS(keys); return w.projection ? w : null; },
    hms: function (ra) { return sexagesimal(ra, true, 2); },
    dms: function (dec) { return sexagesimal(dec, false, 1); },
  };
})(window);
