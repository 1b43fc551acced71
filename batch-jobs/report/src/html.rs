//! The self-contained HTML page every report writes as `report.html`: inline CSS, the chart data as
//! inline JSON, an inline script that draws each chart as SVG line paths, and the result tables
//! rendered on the server side. Nothing is fetched from the network.
//!
//! Rendering contract (checked by the headless-Chromium test): every chart `div` gets
//! `data-rendered="<number of series paths>"` once drawn, every series path carries `data-name` and
//! `data-values` (the plotted values), and `<body>` gets `data-rendered="<number of charts>"`.

use std::fmt::Write as _;

use arrow::array::Array;
use arrow::compute::cast;
use arrow::datatypes::DataType;
use serde::Serialize;

use crate::output::OutputTable;
use crate::{Context, Result};

/// One line chart: x labels, one series per line, optional marked x positions.
#[derive(Debug, Serialize)]
pub(crate) struct Chart {
    pub(crate) title: String,
    pub(crate) unit: String,
    pub(crate) x: Vec<String>,
    pub(crate) series: Vec<Series>,
    /// Indices into `x` to mark with a vertical line (episodes, forecast start).
    pub(crate) marks: Vec<usize>,
}

/// One line.
#[derive(Debug, Serialize)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) values: Vec<Option<f64>>,
}

/// A page being built.
#[derive(Debug, Default)]
pub(crate) struct Page {
    body: String,
    charts: Vec<Chart>,
}

/// How table cells show floats: three decimals, trailing zeros trimmed.
pub fn format_float(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Page {
    pub(crate) fn heading(&mut self, level: u8, text: &str) {
        let _ = writeln!(self.body, "<h{level}>{}</h{level}>", escape(text));
    }

    pub(crate) fn paragraph(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p>{}</p>", escape(text));
    }

    pub(crate) fn notes(&mut self, notes: &[String]) {
        for note in notes {
            let _ = writeln!(self.body, "<p class=\"note\">{}</p>", escape(note));
        }
    }

    pub(crate) fn chart(&mut self, chart: Chart) {
        let index = self.charts.len();
        let _ = writeln!(
            self.body,
            "<div class=\"chart\" data-chart=\"{index}\"><h3>{}</h3></div>",
            escape(&chart.title)
        );
        self.charts.push(chart);
    }

    /// The table's rows as an HTML table (`data-table`, and per cell `data-col`).
    pub(crate) fn table(&mut self, table: &OutputTable) -> Result<()> {
        let _ = writeln!(
            self.body,
            "<div class=\"scroll\"><table data-table=\"{}\"><thead><tr>",
            table.name
        );
        for field in table.schema.fields() {
            let _ = write!(self.body, "<th>{}</th>", escape(field.name()));
        }
        self.body.push_str("</tr></thead><tbody>\n");
        let batch = table.concat()?;
        let mut columns = Vec::new();
        for (index, field) in table.schema.fields().iter().enumerate() {
            let array = batch.column(index);
            let cell: Vec<String> = if matches!(field.data_type(), DataType::Float64 | DataType::Float32) {
                let floats = cast(array, &DataType::Float64)
                    .with_context(|| format!("formatting column {:?} of table {:?}", field.name(), table.name))?;
                let floats = floats
                    .as_any()
                    .downcast_ref::<arrow::array::Float64Array>()
                    .expect("Float64");
                floats.iter().map(|v| v.map(format_float).unwrap_or_default()).collect()
            } else {
                let formatter = arrow::util::display::ArrayFormatter::try_new(
                    array.as_ref(),
                    &arrow::util::display::FormatOptions::default(),
                )
                .with_context(|| format!("formatting column {:?} of table {:?}", field.name(), table.name))?;
                (0..array.len())
                    .map(|row| {
                        if array.is_null(row) {
                            String::new()
                        } else {
                            formatter.value(row).to_string()
                        }
                    })
                    .collect()
            };
            columns.push((field.name().clone(), cell));
        }
        for row in 0..batch.num_rows() {
            let _ = write!(self.body, "<tr data-row=\"{row}\">");
            for (name, cells) in &columns {
                let _ = write!(
                    self.body,
                    "<td data-col=\"{}\">{}</td>",
                    escape(name),
                    escape(&cells[row])
                );
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table></div>\n");
        Ok(())
    }

    pub(crate) fn finish(self, title: &str) -> String {
        let data = serde_json::to_string(&self.charts)
            .expect("charts serialize")
            .replace("</", "<\\/");
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>{CSS}</style></head>\n<body data-rendered=\"0\">\n<h1>{title}</h1>\n{body}\n<script type=\"application/json\" id=\"chart-data\">{data}</script>\n<script>{JS}</script>\n</body></html>\n",
            title = escape(title),
            body = self.body,
        )
    }
}

const CSS: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px}h3{font-size:14px;margin:4px 0}
.chart{display:inline-block;vertical-align:top;margin:0 16px 16px 0}
.chart svg{background:#fafafa;border:1px solid #ddd}
.legend span{margin-right:12px;font-size:12px}
.scroll{max-height:420px;overflow:auto;border:1px solid #ddd;margin-bottom:16px}
table{border-collapse:collapse;font-size:12px}th,td{padding:2px 6px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{position:sticky;top:0;background:#f0f0f0}.note{color:#a40}
"#;

const JS: &str = r#"
(function(){
  var NS = 'http://www.w3.org/2000/svg'; // the SVG namespace name, not a fetch
  var colors = ['#1f77b4','#d62728','#2ca02c','#ff7f0e','#9467bd','#8c564b','#e377c2','#17becf'];
  function el(name, attrs){ var e = document.createElementNS(NS, name); for (var k in attrs) e.setAttribute(k, attrs[k]); return e; }
  var charts = JSON.parse(document.getElementById('chart-data').textContent);
  var drawn = 0;
  document.querySelectorAll('div.chart').forEach(function(div){
    var c = charts[+div.getAttribute('data-chart')];
    var W = 520, H = 220, L = 56, R = 10, T = 10, B = 40;
    var svg = el('svg', {width: W, height: H, viewBox: '0 0 ' + W + ' ' + H});
    var lo = Infinity, hi = -Infinity;
    c.series.forEach(function(s){ s.values.forEach(function(v){ if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }); });
    if (lo === Infinity) { lo = 0; hi = 1; }
    lo = Math.min(lo, 0); if (hi === lo) hi = lo + 1;
    var n = Math.max(c.x.length, 1);
    function px(i){ return L + (n === 1 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1)); }
    function py(v){ return T + (H - T - B) * (1 - (v - lo) / (hi - lo)); }
    svg.appendChild(el('line', {x1: L, y1: T, x2: L, y2: H - B, stroke: '#888'}));
    svg.appendChild(el('line', {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#888'}));
    [lo, (lo + hi) / 2, hi].forEach(function(v){
      var t = el('text', {x: L - 4, y: py(v) + 4, 'text-anchor': 'end', 'font-size': 10}); t.textContent = +v.toPrecision(4); svg.appendChild(t);
    });
    var step = Math.max(1, Math.ceil(n / 6));
    c.x.forEach(function(label, i){ if (i % step === 0 || i === n - 1) {
      var t = el('text', {x: px(i), y: H - B + 14, 'text-anchor': 'middle', 'font-size': 10}); t.textContent = label; svg.appendChild(t); } });
    var u = el('text', {x: 4, y: 10, 'font-size': 10}); u.textContent = c.unit; svg.appendChild(u);
    c.marks.forEach(function(i){
      svg.appendChild(el('line', {'class': 'mark', x1: px(i), y1: T, x2: px(i), y2: H - B, stroke: '#e33', 'stroke-dasharray': '3,2'}));
    });
    var paths = 0, legend = document.createElement('div'); legend.className = 'legend';
    c.series.forEach(function(s, k){
      var d = '', pen = false;
      s.values.forEach(function(v, i){
        if (v === null) { pen = false; return; }
        d += (pen ? 'L' : 'M') + px(i).toFixed(1) + ',' + py(v).toFixed(1); pen = true;
      });
      var color = colors[k % colors.length];
      var p = el('path', {'class': 'series', d: d || 'M0,0', fill: 'none', stroke: color, 'stroke-width': 1.5,
        'data-name': s.name, 'data-values': s.values.map(function(v){ return v === null ? '' : v; }).join(',')});
      svg.appendChild(p); paths++;
      s.values.forEach(function(v, i){ if (v !== null && n <= 62) svg.appendChild(el('circle', {cx: px(i), cy: py(v), r: 2, fill: color})); });
      var item = document.createElement('span'); item.style.color = color; item.textContent = '\u25A0 ' + s.name; legend.appendChild(item);
    });
    div.appendChild(svg); div.appendChild(legend);
    div.setAttribute('data-rendered', paths); drawn++;
  });
  document.body.setAttribute('data-rendered', drawn);
})();
"#;
