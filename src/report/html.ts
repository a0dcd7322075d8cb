// The report page: one HTML file, data and script inline, nothing fetched,
// so it opens from file:// on a machine without network. Plain DOM and inline
// SVG, no framework. The script draws from the JSON in #report-data and
// leaves facts for machines in the DOM: body[data-rendered] once drawn,
// body[data-errors] (window.onerror and console.error feed #errors), and on
// the heatmap data-layer / data-point / data-equal per cell, with
// data-first-mismatch on the first mismatch's cell.
import type { ReportData } from './data.js';

/**
 * JSON safe inside <script>: no '</script>', no line separators JavaScript
 * would break on. JSON has no NaN or infinities: they become {"nonfinite":
 * "Infinity"}, an object no field of the data has, so a token whose text is
 * "NaN" stays text.
 */
export function scriptJson(data: unknown): string {
  const json = JSON.stringify(data, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? { nonfinite: String(v) } : v));
  return json.replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const STYLE = String.raw`
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 14px; color: #1b1f24; background: #fff; }
body { margin: 0 auto; padding: 16px 24px 48px; max-width: 1500px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 6px; } h3 { font-size: 14px; margin: 14px 0 6px; }
.muted { color: #57606a; } .mono, code, td.num { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
table { border-collapse: collapse; margin: 4px 0 8px; } th, td { border: 1px solid #d0d7de; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; } td.num { text-align: right; }
section.sec { border: 1px solid #d0d7de; border-radius: 6px; padding: 12px 16px; margin: 16px 0; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #cf222e; font-weight: 600; } .warn { color: #9a6700; font-weight: 600; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 12px; border: 1px solid; margin-left: 6px; }
.badge.fault { color: #8250df; border-color: #8250df; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.panel { min-width: 0; } svg { display: block; } svg text { font-family: inherit; font-size: 11px; fill: #1b1f24; }
#tip { position: fixed; pointer-events: none; background: #fffffe; border: 1px solid #8c959f; border-radius: 4px; padding: 6px 8px;
  font: 12px ui-monospace, Menlo, Consolas, monospace; white-space: pre; box-shadow: 0 2px 8px rgba(0,0,0,.15); display: none; z-index: 10; }
#errors { color: #cf222e; white-space: pre-wrap; } #errors:empty { display: none; }
details > summary { cursor: pointer; color: #0969da; } select { font: inherit; }
.legend span.sw { display: inline-block; width: 12px; height: 12px; vertical-align: -2px; margin: 0 3px 0 10px; border: 1px solid #8c959f; }
`;

// The page script. Written without template literals: it sits in one.
const SCRIPT = String.raw`
(function () {
  'use strict';
  var errors = [];
  function fail(msg) {
    errors.push(String(msg));
    var el = document.getElementById('errors');
    if (el) el.textContent = errors.join('\n');
    document.body.setAttribute('data-errors', String(errors.length));
  }
  window.addEventListener('error', function (e) { fail('error: ' + (e.message || e.type)); });
  window.addEventListener('unhandledrejection', function (e) { fail('unhandled rejection: ' + e.reason); });
  var consoleError = console.error;
  console.error = function () { fail(Array.prototype.join.call(arguments, ' ')); consoleError.apply(console, arguments); };
  document.body.setAttribute('data-errors', '0');

  var t0 = performance.now();
  var D = JSON.parse(document.getElementById('report-data').textContent, function (k, v) {
    return v !== null && typeof v === 'object' && typeof v.nonfinite === 'string' ? Number(v.nonfinite) : v;
  });
  var POINTS = ['x_in','q','k','v','scores','probs','pv','attn_out','wo_out','x_after_attn','ffn_norm','gate','up','act','mlp_out','x_out','final_norm','lm_head_in','logits'];
  var FINAL = { final_norm: 1, lm_head_in: 1, logits: 1 };
  var PALETTE = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf','#393b79','#637939','#8c6d31','#843c39','#7b4173','#3182bd','#e6550d','#31a354','#756bb1'];
  // Sequential colours for log10 error, low to high (magma-like), and fixed colours for what is not a number.
  var RAMP = [[252,253,191],[254,176,120],[241,96,93],[183,55,121],[114,31,129],[44,17,95],[0,0,4]];
  var EXACT = '#d8f0dc', INF = '#000000', NONE = '#ffffff';
  var METRICS = { rel_l2: 'relative L2', mae: 'MAE', max_abs: 'max abs' };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function add(parent, child) { parent.appendChild(child); return child; }
  function fmt(v) {
    if (v === null || v === undefined) return '-';
    if (v === 0) return '0';
    if (!isFinite(v)) return String(v);
    return v.toExponential(3);
  }
  // 3, 4, 5, 9 -> "3-5, 9"
  function ranges(xs) {
    var out = [];
    for (var i = 0; i < xs.length;) {
      var j = i;
      while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
      out.push(j === i ? String(xs[i]) : xs[i] + '-' + xs[j]);
      i = j + 1;
    }
    return out.join(', ');
  }
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return '&#' + c.charCodeAt(0) + ';'; }); }
  function tok(t) { return t ? t.id + (t.text === null ? '' : ' ' + JSON.stringify(t.text)) : '-'; }
  function where(layer, point, head) {
    return (layer === null ? '' : 'layer ' + layer + ' ') + point + (head === null || head === undefined ? '' : ' head ' + head);
  }
  function color(lg, lo, hi) {
    var t = hi > lo ? (lg - lo) / (hi - lo) : 1;
    t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    var i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i, a = RAMP[i], b = RAMP[i + 1];
    return 'rgb(' + Math.round(a[0] + (b[0] - a[0]) * f) + ',' + Math.round(a[1] + (b[1] - a[1]) * f) + ',' + Math.round(a[2] + (b[2] - a[2]) * f) + ')';
  }

  // The tooltip: one element, filled on hover from the hovered cell's data.
  var tip = add(document.body, el('div', { id: 'tip' }));
  function showTip(ev, text) {
    tip.textContent = text;
    tip.style.display = 'block';
    var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 4) x = ev.clientX - w - 10;
    if (y + h > window.innerHeight - 4) y = ev.clientY - h - 10;
    tip.style.left = x + 'px'; tip.style.top = y + 'px';
  }
  function hideTip() { tip.style.display = 'none'; }

  // The colour scale is shared by every heatmap of the page, per metric, so colours compare across sections.
  function range(metric) {
    var lo = Infinity, hi = -Infinity;
    D.sections.forEach(function (s) { s.cells.forEach(function (c) {
      var v = c[metric];
      if (!c.equal && v > 0 && isFinite(v)) { var l = Math.log10(v); if (l < lo) lo = l; if (l > hi) hi = l; }
    }); });
    if (lo === Infinity) { lo = -8; hi = 0; }
    if (hi - lo < 1) { lo = Math.floor(lo); hi = lo + 1; }
    return [Math.floor(lo), Math.ceil(hi)];
  }

  function cellText(s, c) {
    var lines = [s.prompt + ' ' + s.exp + '  ' + where(c.layer, c.point, null)];
    if (c.heads !== undefined) lines.push('heads: ' + c.heads + ' traced, ' + c.heads_differing + ' differ' + (c.equal ? '' : '; worst head ' + c.head));
    if (c.equal) lines.push('bit-identical (same hash, every bit equal)');
    else lines.push('mae      ' + fmt(c.mae), 'max_abs  ' + fmt(c.max_abs), 'rel_l2   ' + fmt(c.rel_l2));
    if (c.oracle) lines.push('to fp64 oracle (rel L2): prefill_last ' + fmt(c.oracle.prefill_last) + ', decode0 ' + fmt(c.oracle.decode0));
    if (s.first && s.first.layer === c.layer && s.first.point === c.point) lines.push('FIRST MISMATCH');
    return lines.join('\n');
  }

  function heatmap(s, metric) {
    var layers = s.layers.slice(), hasFinal = s.points.some(function (p) { return FINAL[p]; });
    var cols = layers.map(String); if (hasFinal) cols.push('final');
    var rows = s.points;
    var cw = Math.max(8, Math.min(20, Math.floor(700 / Math.max(1, cols.length)))), ch = 16, left = 92, top = 22;
    var W = left + cols.length * cw + 8, H = top + rows.length * ch + 30;
    var byKey = {};
    s.cells.forEach(function (c, i) { byKey[(c.layer === null ? 'final' : c.layer) + ':' + c.point] = i; });
    var r = range(metric), out = [], exact = 0;
    out.push('<svg class="heatmap" width="' + W + '" height="' + H + '" data-section="' + s.id + '" data-metric="' + metric + '">');
    cols.forEach(function (c, j) {
      var step = Math.max(1, Math.ceil(22 / cw));
      if (j % step === 0 || c === 'final') out.push('<text x="' + (left + j * cw + cw / 2) + '" y="' + (top - 6) + '" text-anchor="middle">' + c + '</text>');
    });
    rows.forEach(function (p, i) { out.push('<text x="' + (left - 6) + '" y="' + (top + i * ch + ch - 4) + '" text-anchor="end">' + p + '</text>'); });
    var firstRect = '';
    rows.forEach(function (p, i) {
      cols.forEach(function (col, j) {
        var k = byKey[col + ':' + p];
        var x = left + j * cw, y = top + i * ch;
        if (k === undefined) return;
        var c = s.cells[k], v = c[metric], fill;
        if (c.equal) { fill = EXACT; exact++; } else if (!isFinite(v)) fill = INF; else fill = v > 0 ? color(Math.log10(v), r[0], r[1]) : EXACT;
        var isFirst = s.first && s.first.layer === c.layer && s.first.point === c.point;
        var attrs = ' data-i="' + k + '" data-layer="' + col + '" data-point="' + p + '" data-equal="' + c.equal + '"' + (c.equal ? '' : ' data-log10="' + (v > 0 && isFinite(v) ? Math.log10(v).toFixed(3) : v) + '"');
        out.push('<rect class="cell" x="' + x + '" y="' + y + '" width="' + (cw - 1) + '" height="' + (ch - 1) + '" fill="' + fill + '"' + attrs + (isFirst ? ' data-first-mismatch="1"' : '') + '/>');
        if (c.equal && cw >= 12) out.push('<text x="' + (x + cw / 2 - 0.5) + '" y="' + (y + ch - 4.5) + '" text-anchor="middle" fill="#2f7a3e" pointer-events="none">=</text>');
        if (isFirst) firstRect = '<rect x="' + (x - 1.5) + '" y="' + (y - 1.5) + '" width="' + (cw + 2) + '" height="' + (ch + 2) + '" fill="none" stroke="#0969da" stroke-width="3" pointer-events="none"/>';
      });
    });
    out.push(firstRect);
    out.push('<text x="' + left + '" y="' + (H - 8) + '" class="muted">layer &#8594;   (= bit-identical; outlined: first mismatch; black: rows of different widths)</text>');
    out.push('</svg>');
    var box = el('div', { class: 'panel', style: 'max-width:' + W + 'px' });
    box.innerHTML = out.join('');
    var svg = box.firstChild;
    svg.setAttribute('data-cells', String(s.cells.length));
    svg.setAttribute('data-exact', String(exact));
    svg.addEventListener('mousemove', function (ev) {
      var t = ev.target;
      if (t && t.getAttribute && t.getAttribute('data-i') !== null) showTip(ev, cellText(s, s.cells[+t.getAttribute('data-i')]));
      else hideTip();
    });
    svg.addEventListener('mouseleave', hideTip);
    // Legend: the ramp's range in log10 of the metric.
    var lg = add(box, el('div', { class: 'legend muted' }));
    lg.innerHTML = 'log10 ' + esc(METRICS[metric]) + ': ' + [0, 0.25, 0.5, 0.75, 1].map(function (f) {
      var l = r[0] + (r[1] - r[0]) * f;
      return '<span class="sw" style="background:' + color(l, r[0], r[1]) + '"></span>' + l.toFixed(1);
    }).join('') + '<span class="sw" style="background:' + EXACT + '"></span>bit-identical<span class="sw" style="background:' + NONE + '"></span>not traced';
    return box;
  }

  // Error through depth: one line per point (per-head points: the worst head), log10 of the metric.
  function lineChart(title, series, xs, opts) {
    var W = 560, H = 230, L = 44, R = 22, T = 22, B = 30;
    var lo = Infinity, hi = -Infinity;
    series.forEach(function (sr) { sr.values.forEach(function (v) { if (v > 0 && isFinite(v)) { var l = Math.log10(v); lo = Math.min(lo, l); hi = Math.max(hi, l); } }); });
    if (opts.bound) { var lb = Math.log10(opts.bound); lo = Math.min(lo, lb); hi = Math.max(hi, lb); }
    if (lo === Infinity) { lo = -8; hi = 0; }
    lo = Math.floor(lo) - 1; hi = Math.ceil(hi); if (hi <= lo + 1) hi = lo + 2;
    // Zero (bit-identical) sits on its own line below the axis range.
    var floorY = H - B + 2, yOf = function (v) { return v === 0 ? floorY : !isFinite(v) ? T - 6 : T + (hi - Math.log10(v)) / (hi - lo) * (H - B - T - 8); };
    var xOf = function (j) { return L + (xs.length <= 1 ? 0 : j / (xs.length - 1) * (W - L - R)); };
    var o = ['<svg width="' + W + '" height="' + (H + 6) + '" class="chart">'];
    o.push('<text x="' + L + '" y="12">' + esc(title) + '</text>');
    for (var e = lo; e <= hi; e++) {
      var y = yOf(Math.pow(10, e));
      o.push('<line x1="' + L + '" x2="' + (W - R) + '" y1="' + y + '" y2="' + y + '" stroke="#eaeef2"/><text x="' + (L - 4) + '" y="' + (y + 4) + '" text-anchor="end">1e' + e + '</text>');
    }
    o.push('<text x="' + (L - 4) + '" y="' + (floorY + 4) + '" text-anchor="end">0</text>');
    var step = Math.max(1, Math.ceil(xs.length / 16));
    xs.forEach(function (x, j) { if (j % step === 0 || j === xs.length - 1) o.push('<text x="' + xOf(j) + '" y="' + (H + 2) + '" text-anchor="middle">' + x + '</text>'); });
    if (opts.bound) { var by = yOf(opts.bound); o.push('<line x1="' + L + '" x2="' + (W - R) + '" y1="' + by + '" y2="' + by + '" stroke="#cf222e" stroke-dasharray="4 3"/><text x="' + (W - R) + '" y="' + (by - 3) + '" text-anchor="end" fill="#cf222e">bound ' + fmt(opts.bound) + '</text>'); }
    series.forEach(function (sr) {
      var pts = [];
      sr.values.forEach(function (v, j) { if (v !== null && v !== undefined) pts.push(xOf(j).toFixed(1) + ',' + yOf(v).toFixed(1)); });
      if (pts.length) o.push('<polyline fill="none" stroke="' + sr.color + '" stroke-width="1.6" points="' + pts.join(' ') + '"' + (sr.dash ? ' stroke-dasharray="5 3"' : '') + '><title>' + esc(sr.name) + '</title></polyline>');
      if (pts.length === 1) o.push('<circle cx="' + pts[0].split(',')[0] + '" cy="' + pts[0].split(',')[1] + '" r="2.5" fill="' + sr.color + '"/>');
    });
    o.push('</svg>');
    var box = el('div', { class: 'panel', style: 'max-width:' + W + 'px' });
    box.innerHTML = o.join('');
    var lg = add(box, el('div', { class: 'legend muted' }));
    lg.innerHTML = series.map(function (sr) { return '<span class="sw" style="background:' + sr.color + '"></span>' + esc(sr.name); }).join('');
    return box;
  }

  function growth(s, metric) {
    var xs = s.layers.slice(), hasFinal = s.points.some(function (p) { return FINAL[p]; });
    if (hasFinal) xs.push('final');
    var idx = {}; xs.forEach(function (x, j) { idx[x] = j; });
    var series = s.points.map(function (p) {
      var vals = xs.map(function () { return null; });
      s.cells.forEach(function (c) { if (c.point === p) vals[idx[c.layer === null ? 'final' : c.layer]] = c.equal ? 0 : c[metric]; });
      return { name: p, color: PALETTE[POINTS.indexOf(p) % PALETTE.length], values: vals };
    });
    return lineChart('error growth through depth: ' + METRICS[metric] + ' of decode0 against prefill_last (0: bit-identical)', series, xs, {});
  }

  function oracleChart(s) {
    var xs = s.layers.slice(), hasFinal = s.points.some(function (p) { return FINAL[p]; });
    if (hasFinal) xs.push('final');
    var idx = {}; xs.forEach(function (x, j) { idx[x] = j; });
    function worst(side) {
      var vals = xs.map(function () { return null; });
      s.cells.forEach(function (c) {
        var v = c.oracle ? c.oracle[side] : null, j = idx[c.layer === null ? 'final' : c.layer];
        if (v !== null && (vals[j] === null || v > vals[j])) vals[j] = v;
      });
      return vals;
    }
    return lineChart('distance to the fp64 oracle (relative L2, worst point of each layer)', [
      { name: 'prefill_last', color: '#0969da', values: worst('prefill_last') },
      { name: 'decode0', color: '#cf222e', values: worst('decode0'), dash: true },
    ], xs, { bound: s.oracle.bound });
  }

  function probsPanel(s) {
    var a = s.attention, box = el('div', { class: 'panel', style: 'max-width:560px' });
    add(box, el('h3', null, 'attention: probs of one head, both phases'));
    if (a.none) { add(box, el('div', { class: 'muted' }, a.none)); return box; }
    var n = Math.max(a.prefill_last.length, a.decode0.length), diff = 0, maxJ = -1, maxD = -1;
    for (var j = 0; j < n; j++) {
      var p = a.prefill_last[j], d = a.decode0[j];
      if (p !== d) { diff++; var dd = Math.abs((p || 0) - (d || 0)); if (dd > maxD) { maxD = dd; maxJ = j; } }
    }
    add(box, el('div', null, 'layer ' + a.layer + ' head ' + a.head + ' (' + (a.why === 'first_mismatch' ? 'the first mismatch\'s layer' : 'the first probs row that differs') + '): ' +
      (a.equal ? 'both phases attend alike, bit for bit' : 'decode0 attends differently at ' + diff + ' of ' + n + ' keys; largest change at key ' + maxJ + ': ' +
        fmt(a.prefill_last[maxJ]) + ' -> ' + fmt(a.decode0[maxJ]) +
        (a.prefill_last.length !== a.decode0.length ? ' (prefill_last attends to ' + a.prefill_last.length + ' keys, decode0 to ' + a.decode0.length + ')' : ' (mae ' + fmt(a.mae) + ', max_abs ' + fmt(a.max_abs) + ')'))));
    var W = 560, H = 200, L = 70, R = 10, mid = H / 2, half = mid - 16, bw = (W - L - R) / Math.max(1, n);
    var mx = 0; a.prefill_last.concat(a.decode0).forEach(function (v) { if (isFinite(v) && v > mx) mx = v; });
    if (mx === 0) mx = 1;
    var o = ['<svg width="' + W + '" height="' + (H + 14) + '" class="probs" data-layer="' + a.layer + '" data-head="' + a.head + '" data-keys="' + n + '" data-differing="' + diff + '">'];
    o.push('<text x="' + (L - 6) + '" y="' + (mid - half / 2) + '" text-anchor="end">prefill_last</text><text x="' + (L - 6) + '" y="' + (mid + half / 2) + '" text-anchor="end">decode0</text>');
    o.push('<line x1="' + L + '" x2="' + (W - R) + '" y1="' + mid + '" y2="' + mid + '" stroke="#8c959f"/>');
    for (var k = 0; k < n; k++) {
      var pv = a.prefill_last[k], dv = a.decode0[k], ch = pv !== dv, x = L + k * bw;
      if (ch) o.push('<rect x="' + x + '" y="' + (mid - half) + '" width="' + Math.max(1, bw) + '" height="' + (2 * half) + '" fill="#ffebe9"/>');
      if (pv !== undefined) o.push('<rect data-k="' + k + '" x="' + x + '" y="' + (mid - pv / mx * half) + '" width="' + Math.max(1, bw - (bw > 3 ? 1 : 0)) + '" height="' + Math.max(0, pv / mx * half) + '" fill="#0969da"/>');
      if (dv !== undefined) o.push('<rect data-k="' + k + '" x="' + x + '" y="' + mid + '" width="' + Math.max(1, bw - (bw > 3 ? 1 : 0)) + '" height="' + Math.max(0, dv / mx * half) + '" fill="' + (ch ? '#cf222e' : '#8c959f') + '"/>');
    }
    o.push('<text x="' + L + '" y="' + (H + 10) + '">key 0</text><text x="' + (W - R) + '" y="' + (H + 10) + '" text-anchor="end">key ' + (n - 1) + '</text></svg>');
    var div = add(box, el('div'));
    div.innerHTML = o.join('');
    div.firstChild.addEventListener('mousemove', function (ev) {
      var kk = ev.target.getAttribute && ev.target.getAttribute('data-k');
      if (kk === null || kk === undefined) { hideTip(); return; }
      var pv = a.prefill_last[+kk], dv = a.decode0[+kk];
      showTip(ev, 'key ' + kk + '\nprefill_last ' + fmt(pv) + '\ndecode0      ' + fmt(dv) + '\n' + (pv === dv ? 'equal' : 'diff ' + fmt((dv || 0) - (pv || 0))));
    });
    div.firstChild.addEventListener('mouseleave', hideTip);
    return box;
  }

  function table(head, rows, numCols) {
    var t = el('table'), tr = add(add(t, el('thead')), el('tr'));
    head.forEach(function (h) { add(tr, el('th', null, h)); });
    var tb = add(t, el('tbody'));
    rows.forEach(function (r) {
      var row = add(tb, el('tr'));
      r.forEach(function (c, j) { add(row, el('td', numCols && numCols[j] ? { class: 'num' } : null, c)); });
    });
    return t;
  }

  function topkPanel(s) {
    var box = el('div', { class: 'panel' });
    add(box, el('h3', null, 'top-k logits'));
    var row = add(box, el('div', { class: 'row' }));
    ['prefill_last', 'decode0'].forEach(function (ph) {
      var col = add(row, el('div'));
      add(col, el('div', { class: 'muted' }, ph + ' top-1: ' + tok(s.top1[ph])));
      var k = s.topk[ph];
      if (!k) { add(col, el('div', { class: 'muted' }, 'logits not traced: no top-k')); return; }
      add(col, table(['#', 'id', 'text', 'logit'], k.map(function (e, i) { return [String(i + 1), String(e.id), e.text === null ? '-' : JSON.stringify(e.text), fmt(e.value)]; }), [true, true, false, true]));
    });
    return box;
  }

  function kvPanel(s) {
    var box = el('div', { class: 'panel' });
    add(box, el('h3', null, 'KV cache check'));
    var k = s.kv_check;
    if (!k) { add(box, el('div', { class: 'muted' }, 'not checked (trace with --kv-check)')); return box; }
    var what = 'K/V of ' + k.layers + ' layers x ' + k.positions + ' positions x ' + k.kv_heads + ' kv heads after ' + k.phase;
    if (k.equal) { add(box, el('div', { class: 'ok', 'data-kv': 'equal' }, what + ': equal to the prefill\'s, bit for bit')); return box; }
    var f = k.first;
    add(box, el('div', { class: 'bad', 'data-kv': 'differs' }, what + ': ' + k.differing + ' rows differ, in layers ' + ranges(k.layers_differing)));
    add(box, table(['first differing row', 'layer', 'position', 'kv head', 'tensor', 'mae', 'max_abs'],
      [['', String(f.layer), String(f.position), String(f.kv_head), f.tensor, fmt(f.mae), fmt(f.max_abs)]], [false, true, true, true, false, true, true]));
    return box;
  }

  function verdictLine(s) {
    var d = el('div', { class: 'verdict' });
    if (s.status !== 'compared') { d.className = 'verdict warn'; d.textContent = s.first_mismatch_stage + ': ' + s.reason; return d; }
    if (!s.first) { d.className = 'verdict ok'; d.textContent = 'bit-identical everywhere: all ' + s.pairs + ' (layer, point) pairs equal, bit for bit' + (D.tol > 0 ? ' (within MAE ' + fmt(D.tol) + ')' : ''); return d; }
    var f = s.first, pos = function (p) { return 'token ' + p.token_id + ' index ' + p.token_index + ' pos ' + p.pos_id + ' seq_len ' + p.seq_len; };
    d.className = 'verdict bad';
    d.textContent = 'first mismatch at ' + where(f.layer, f.point, f.head) + ': ' +
      (f.widths ? 'rows of different widths (' + f.widths.prefill_last + ' and ' + f.widths.decode0 + ')' : 'mae ' + fmt(f.mae) + ', max_abs ' + fmt(f.max_abs) + ', rel_l2 ' + fmt(f.rel_l2)) +
      '; ' + s.equal_pairs + ' of ' + s.pairs + ' pairs bit-identical';
    var sub = el('div', { class: 'muted mono' }, 'prefill_last ' + pos(f.prefill_last) + '; decode0 ' + pos(f.decode0));
    var wrap = el('div'); add(wrap, d); add(wrap, sub); return wrap;
  }

  function oracleLine(s) {
    var v = s.oracle, d = el('div');
    var w = function (x) { return x ? fmt(x.rel_l2) + ' at ' + where(x.layer, x.point, x.head) : '-'; };
    var txt;
    if (!v.at) txt = 'no mismatch; worst distance to it: prefill_last ' + w(v.worst.prefill_last) + ', decode0 ' + w(v.worst.decode0);
    else {
      var verdict = v.departed === 'neither' ? 'neither side departed beyond fp32 rounding of fp64' : v.departed === 'both' ? 'both sides departed from it' : v.departed + ' departed';
      txt = 'at ' + where(v.at.layer, v.at.point, v.at.head) + ' prefill_last is ' + fmt(v.prefill_last_rel_l2) + ' from fp64 and decode0 ' + fmt(v.decode0_rel_l2) + ': ' + verdict;
    }
    add(d, el('b', { 'data-departed': v.departed === null ? 'none' : v.departed }, 'oracle (' + v.oracle_backend + ', run ' + v.oracle_run + ', bound ' + fmt(v.bound) + '): '));
    add(d, document.createTextNode(txt));
    return d;
  }

  function section(s) {
    var sec = el('section', {
      class: 'sec', id: s.id, 'data-prompt': s.prompt, 'data-exp': s.exp, 'data-run': s.run_id, 'data-status': s.status,
      'data-first-stage': s.first_mismatch_stage, 'data-first-layer': s.first ? (s.first.layer === null ? 'final' : String(s.first.layer)) : '',
      'data-bit-identical': String(s.status === 'compared' && !s.first),
    });
    var h = add(sec, el('h2', null, s.prompt + ' ' + s.exp));
    add(h, el('span', { class: 'muted' }, '  run ' + s.run_id + ' · ' + s.model + ' on ' + s.backend));
    if (s.fault) add(h, el('span', { class: 'badge fault', title: 'planted with --fault: the decode path is wrong on purpose' }, 'planted fault ' + s.fault));
    add(sec, verdictLine(s));
    if (s.oracle) add(sec, oracleLine(s));
    if (s.collapse) add(sec, el('div', { class: 'bad' }, 'collapse: decode0 gives ' + tok(s.collapse) + ' for prompts whose prefill_last top-1s differ'));
    if (s.cells.length) {
      var ctl = add(sec, el('div', { class: 'muted' }, 'heatmap: layer x point, colour = log10 of '));
      var sel = add(ctl, el('select', { 'aria-label': 'metric' }));
      Object.keys(METRICS).forEach(function (m) { add(sel, el('option', { value: m }, METRICS[m])); });
      var row = add(sec, el('div', { class: 'row' }));
      var draw = function () {
        row.textContent = '';
        add(row, heatmap(s, sel.value));
        add(row, growth(s, sel.value));
        if (s.oracle) add(row, oracleChart(s));
      };
      sel.addEventListener('change', draw);
      draw();
    }
    var row2 = add(sec, el('div', { class: 'row' }));
    add(row2, probsPanel(s));
    add(row2, kvPanel(s));
    add(row2, topkPanel(s));
    if (s.unpaired.length) add(sec, el('div', { class: 'muted' }, 'traced in one phase only: ' + s.unpaired.join(', ')));
    return sec;
  }

  function summary() {
    var box = el('div');
    add(box, el('h2', null, 'summary'));
    var rows = D.sections.map(function (s) {
      return [s.prompt, s.exp, s.run_id, s.fault || '', s.status === 'compared' ? (s.first ? where(s.first.layer, s.first.point, s.first.head) : 'NONE (bit-identical)') : s.first_mismatch_stage,
        s.first ? fmt(s.first.mae) : '-', s.oracle ? (s.oracle.departed || '-') : '', s.kv_check ? (s.kv_check.equal ? 'equal' : 'differs from layer ' + s.kv_check.first.layer) : '',
        tok(s.top1.prefill_last), tok(s.top1.decode0), s.collapse ? 'true' : 'false'];
    });
    var t = add(box, table(['prompt', 'exp', 'run', 'fault', 'first mismatch', 'mae', 'departed (oracle)', 'kv check', 'prefill_last top-1', 'decode0 top-1', 'collapse'], rows, [false, false, false, false, false, true]));
    Array.prototype.forEach.call(t.querySelectorAll('tbody tr'), function (tr, i) {
      var a = el('a', { href: '#' + D.sections[i].id }, D.sections[i].prompt);
      tr.firstChild.textContent = ''; tr.firstChild.appendChild(a);
    });
    var all = D.sections.length > 0 && D.sections.every(function (s) { return s.status === 'compared' && !s.first; });
    add(box, el('div', { class: all ? 'ok' : 'muted', id: 'overall', 'data-all-bit-identical': String(all) },
      all ? 'every prompt and experiment: bit-identical everywhere' : D.sections.filter(function (s) { return s.first; }).length + ' of ' + D.sections.length + ' prompt x experiment rows have a first mismatch'));
    D.problems.forEach(function (p) { add(box, el('div', { class: 'warn' }, p)); });
    if (D.collapse.length) {
      add(box, el('h3', null, 'collapse across prompts'));
      add(box, table(['model', 'backend', 'exp', 'stuck decode0 token', 'prompts (their prefill_last top-1)'], D.collapse.map(function (g) {
        return [g.model, g.backend, g.exp, tok(g.token), g.prompts.map(function (p) { return p.prompt + ' (' + tok(p.prefill_last_top1) + ')'; }).join(', ')];
      })));
    }
    return box;
  }

  function comparePanel() {
    var box = el('div', { id: 'compare' });
    add(box, el('h2', null, 'compare against ' + D.compare.base));
    D.compare.results.forEach(function (r) {
      var d = add(box, el('div', { class: 'sec-compare' }));
      add(d, el('div', null, 'base: ' + r.base.file + ', run ' + r.base.run_id + ' (' + r.base.model + ' on ' + r.base.backend + ')  ·  test: ' + r.test.file + ', run ' + r.test.run_id + ' (' + r.test.model + ' on ' + r.test.backend + ')'));
      add(d, el('div', { class: 'muted' }, 'tolerance: ' + r.mode_reason));
      var f = r.first;
      add(d, el('div', { class: f ? 'bad' : 'ok', 'data-compare-first': f ? f.prompt + ' ' + f.exp + ' ' + f.phase + ' ' + where(f.layer, f.point, f.head) : 'none' },
        f ? 'first beyond tolerance: ' + f.prompt + ' ' + f.exp + ' ' + f.phase + ' ' + where(f.layer, f.point, f.head) + ': ' + (f.problem === 'position' || f.problem === 'shape' ? f.detail : 'rel_l2 ' + fmt(f.rel_l2) + ' (bound ' + (f.bound === 0 ? 'bits equal' : fmt(f.bound)) + '), mae ' + fmt(f.mae))
          : 'first beyond tolerance: none (' + r.pairs + ' common pairs within tolerance)'));
      add(d, el('h3', null, 'worst relative L2 per layer (error growth through depth)'));
      add(d, table(['layer'].concat(r.phase_names), r.layers.map(function (l) {
        return [l.layer === null ? 'final' : String(l.layer)].concat(r.phase_names.map(function (ph) { var w = l.phases[ph]; return !w ? '-' : w.rel_l2 === 0 ? '0 (bits equal)' : fmt(w.rel_l2) + ' ' + where(null, w.point, w.head); }));
      })));
      add(d, el('div', { class: 'muted' }, r.pairs + ' pairs, ' + r.beyond + ' beyond tolerance, ' + r.only_base + ' only in base, ' + r.only_test + ' only in test'));
    });
    return box;
  }

  function runsPanel() {
    var box = el('div');
    add(box, el('h2', null, 'runs'));
    var rows = D.runs.map(function (r) {
      return [r.run_id + (r.oracle_for ? ' (oracle of ' + r.oracle_for + ')' : ''), r.model.name + ' (' + r.model.weight_dtype + (r.model.seed ? ', seed ' + r.model.seed : '') + ')', r.backend, r.device, r.git_commit || '-', r.created_at, r.tool.name + ' ' + r.tool.version, r.finished ? 'yes' : 'NO', r.file];
    });
    add(box, table(['run', 'model', 'backend', 'device', 'commit', 'date', 'tool', 'finished', 'file'], rows));
    D.runs.forEach(function (r) {
      var det = add(box, el('details'));
      add(det, el('summary', null, r.run_id + ': config and options'));
      add(det, el('pre', { class: 'mono' }, 'config ' + JSON.stringify(r.config, null, 1) + '\noptions ' + JSON.stringify(r.options, null, 1)));
    });
    return box;
  }

  var root = document.getElementById('report');
  add(root, summary());
  if (D.compare) add(root, comparePanel());
  add(root, runsPanel());
  D.sections.forEach(function (s) { add(root, section(s)); });
  var ms = performance.now() - t0;
  document.body.setAttribute('data-render-ms', ms.toFixed(1));
  document.getElementById('render-time').textContent = 'drawn in ' + ms.toFixed(0) + ' ms';
  document.body.setAttribute('data-rendered', '1');
})();
`;

/** The report page of `data`: one HTML file, everything inline. */
export function renderHtml(data: ReportData): string {
  const title = `gretacore report: ${data.sections.map((s) => `${s.prompt} ${s.exp}`).slice(0, 4).join(', ')}${data.sections.length > 4 ? ', ...' : ''}`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    // Nothing may be fetched: the page must open offline from file://.
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">`,
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head><body>',
    '<h1>gretacore report: prefill_last against decode0</h1>',
    `<div class="muted">generated ${escapeHtml(data.generated_at)} from ${escapeHtml(data.files.join(', '))}; analyzer tol ${data.tol}, oracle bound ${data.oracle_tol} · <span id="render-time"></span></div>`,
    '<noscript>This report draws with JavaScript; the data is in the #report-data script element.</noscript>',
    '<pre id="errors"></pre>',
    '<main id="report"></main>',
    `<script type="application/json" id="report-data">${scriptJson(data)}</script>`,
    `<script>${SCRIPT}</script>`,
    '</body></html>',
    '',
  ].join('\n');
}
