/* pyiip viewer: FITS celestial WCS from a FITS header, pixel -> sky.
 *
 * The linear part from CDi_j, or PCi_j with CDELTi, or CDELTi with CROTA2; the
 * zenithal projections TAN, SIN, ARC, ZEA and STG (Calabretta & Greisen 2002,
 * A&A 395, 1077); the distortions survey images carry: SIP (Shupe et al. 2005,
 * A_p_q and B_p_q on pixel offsets: HST, Spitzer, ZTF) and TPV (SCAMP's
 * polynomial PVi_0..39 on intermediate coordinates: CFHT, DES; also TAN with
 * PV cards, which wcslib reads as TPV). A celestial WCS outside these is named
 * by ``unsupported`` rather than shown with wrong numbers. Coordinates are FITS
 * 1-based pixels; angles are degrees.
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

  function has(keys, pattern) {
    return Object.keys(keys).some(function (k) { return pattern.test(k); });
  }

  /* The linear part: CDi_j if present, otherwise CDELTi x PCi_j, otherwise CDELTi with CROTA2. */
  function linearMatrix(keys) {
    if (has(keys, /^CD[12]_[12]$/)) {
      return [[num(keys, "CD1_1", 0), num(keys, "CD1_2", 0)], [num(keys, "CD2_1", 0), num(keys, "CD2_2", 0)]];
    }
    var pc = has(keys, /^PC[12]_[12]$/);
    var c1 = num(keys, "CDELT1", pc ? 1 : NaN);
    var c2 = num(keys, "CDELT2", pc ? 1 : NaN);
    if (!isFinite(c1) || !isFinite(c2)) return null;
    if (pc) {
      return [[c1 * num(keys, "PC1_1", 1), c1 * num(keys, "PC1_2", 0)],
              [c2 * num(keys, "PC2_1", 0), c2 * num(keys, "PC2_2", 1)]];
    }
    var rho = num(keys, "CROTA2", 0) * D2R;
    return [[c1 * Math.cos(rho), -c2 * Math.sin(rho)], [c1 * Math.sin(rho), c2 * Math.cos(rho)]];
  }

  /* "lon", "lat" or "" for a CTYPE (RA/DEC, xLON/xLAT, yzLN/yzLT). */
  function axisKind(ctype) {
    var head = ctype.substr(0, 4);
    if (head === "RA--" || head.substr(1) === "LON" || head.substr(2) === "LN") return "lon";
    if (head === "DEC-" || head.substr(1) === "LAT" || head.substr(2) === "LT") return "lat";
    return "";
  }

  var SIP_ORDER = 9; /* real headers stop at 5 or so; a larger one is refused, not looped over */

  /* SIP polynomial {p_q: coefficient} of prefix "A" or "B" up to its order. */
  function sipTerms(keys, prefix) {
    var order = num(keys, prefix + "_ORDER", 0);
    var terms = [];
    for (var p = 0; p <= order; p++) {
      for (var q = 0; p + q <= order; q++) {
        var c = num(keys, prefix + "_" + p + "_" + q, 0);
        if (c) terms.push([p, q, c]);
      }
    }
    return terms;
  }

  function sipValue(terms, u, v) {
    var sum = 0;
    for (var i = 0; i < terms.length; i++) sum += terms[i][2] * Math.pow(u, terms[i][0]) * Math.pow(v, terms[i][1]);
    return sum;
  }

  /* TPV's 40 monomials of (x, y) and r = sqrt(x^2 + y^2): 1, x, y, r, x^2, xy, y^2, x^3, x^2y, xy^2, y^3, r^3,
   * then each degree d = 4..7 as x^d ... y^d, with r^5 and r^7 after degrees 5 and 7. */
  var TPV_POWERS = (function () {
    var list = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]];
    for (var d = 2; d <= 7; d++) {
      for (var k = d; k >= 0; k--) list.push([k, d - k, 0]);
      if (d % 2) list.push([0, 0, d]);
    }
    return list;
  })();

  function tpvTerms(keys, axis) {
    var terms = [];
    for (var m = 0; m < TPV_POWERS.length; m++) {
      var c = num(keys, "PV" + axis + "_" + m, 0);
      if (c) terms.push([TPV_POWERS[m], c]);
    }
    return terms;
  }

  function tpvValue(terms, x, y, r) {
    var sum = 0;
    for (var i = 0; i < terms.length; i++) {
      var p = terms[i][0];
      sum += terms[i][1] * Math.pow(x, p[0]) * Math.pow(y, p[1]) * Math.pow(r, p[2]);
    }
    return sum;
  }

  /* Why the header's celestial WCS cannot be shown here, or "" when it can (or there is none). */
  function unsupported(keys) {
    var ctype1 = String(keys.CTYPE1 || "");
    var ctype2 = String(keys.CTYPE2 || "");
    var kinds = [axisKind(ctype1), axisKind(ctype2)];
    if (!kinds[0] && !kinds[1]) return "";
    if (kinds[0] !== "lon" || kinds[1] !== "lat") return "celestial axes " + ctype1 + ", " + ctype2;
    var code = ctype1.substr(5, 3);
    var extra = ctype1.substr(8);
    if (ctype2.substr(5, 3) !== code || ctype2.substr(8) !== extra) return "mixed projections " + ctype1 + ", " + ctype2;
    if (!ZENITHAL[code] && code !== "TPV") return code + " projection";
    if (extra && extra !== "-SIP") return code + extra + " distortion";
    if (extra === "-SIP" && !(num(keys, "A_ORDER", 0) <= SIP_ORDER && num(keys, "B_ORDER", 0) <= SIP_ORDER)) {
      return "SIP beyond order " + SIP_ORDER;
    }
    if (has(keys, /^(CPDIS|CQDIS|D2IMDIS)[12]$/)) return code + " with lookup-table distortion (CPDIS/CQDIS/D2IM)";
    var pv = has(keys, /^PV[12]_\d+$/);
    if (pv && extra === "-SIP") return code + "-SIP with PV cards";
    if (pv && code !== "TAN" && code !== "TPV") return code + " with PV parameters";
    if (!linearMatrix(keys)) return "no CD, PC or CDELT scale";
    return "";
  }

  /* A WCS from a parsed header (unsupported(keys) must be ""), or null when it has no celestial WCS. */
  function WCS(keys) {
    var ctype1 = String(keys.CTYPE1 || "");
    var ctype2 = String(keys.CTYPE2 || "");
    var code = ctype1.substr(5, 3);
    this.projection = code + ctype1.substr(8);
    this.zenithal = ZENITHAL[code === "TPV" ? "TAN" : code];
    this.lonType = ctype1.substr(0, 4).replace(/-+$/, "");
    this.latType = ctype2.substr(0, 4).replace(/-+$/, "");
    this.crpix = [num(keys, "CRPIX1", 0), num(keys, "CRPIX2", 0)];
    this.crval = [num(keys, "CRVAL1", 0), num(keys, "CRVAL2", 0)];
    this.cd = linearMatrix(keys);
    this.lonpole = num(keys, "LONPOLE", this.crval[1] >= 90 ? 0 : 180);
    if (ctype1.substr(8) === "-SIP") {
      this.sip = [sipTerms(keys, "A"), sipTerms(keys, "B")];
    } else if (has(keys, /^PV[12]_\d+$/)) {
      this.tpv = [tpvTerms(keys, 1), tpvTerms(keys, 2)];
      if (code === "TAN") this.projection = "TAN (TPV)";
    }
    var cd = this.cd;
    var det = cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0];
    this.pixelScale = Math.sqrt(Math.abs(det)) * 3600; /* arcsec per pixel */
    this.equatorial = this.lonType === "RA";
  }

  /* FITS 1-based pixel (x, y) -> [longitude, latitude] in degrees. */
  WCS.prototype.pixelToWorld = function (x, y) {
    var dx = x - this.crpix[0];
    var dy = y - this.crpix[1];
    if (this.sip) {
      var u = dx;
      dx += sipValue(this.sip[0], u, dy);
      dy += sipValue(this.sip[1], u, dy);
    }
    var cd = this.cd;
    var ix = cd[0][0] * dx + cd[0][1] * dy;
    var iy = cd[1][0] * dx + cd[1][1] * dy;
    if (this.tpv) {
      var rr = Math.sqrt(ix * ix + iy * iy);
      var xi = tpvValue(this.tpv[0], ix, iy, rr);
      iy = tpvValue(this.tpv[1], iy, ix, rr); /* the second axis swaps x and y */
      ix = xi;
    }
    var r = Math.sqrt(ix * ix + iy * iy);
    var phi = r === 0 ? 0 : Math.atan2(ix, -iy);
    var theta = this.zenithal(r) * D2R;
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
    unsupported: unsupported,
    fromHeader: function (keys) {
      return axisKind(String(keys.CTYPE1 || "")) && !unsupported(keys) ? new WCS(keys) : null;
    },
    hms: function (ra) { return sexagesimal(ra, true, 2); },
    dms: function (dec) { return sexagesimal(dec, false, 1); },
  };
})(typeof window !== "undefined" ? window : globalThis);
