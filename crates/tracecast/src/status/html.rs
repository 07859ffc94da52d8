//! The status page: one self-contained HTML document (inline CSS, a few lines of inline JS,
//! no external resource of any kind), rendered on the server from [`Status`].
//!
//! The script refreshes the `#live` part every [`REFRESH_SECONDS`] by fetching the page
//! again, and runs the two actions (test a destination's connection, send a test trace)
//! with `fetch` POSTs to the same origin; without JS the page is still complete, only static.
//! Every value from the config, the store or a backend is HTML-escaped.

use std::fmt::Write;

use super::{Status, PAGE_ROWS};

/// How often the page refreshes itself.
pub const REFRESH_SECONDS: u32 = 5;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1.5 KiB`, `12 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `42s`, `3m 05s`, `2h 01m`, `3d 4h`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `HH:MM:SS UTC` of a unix-milliseconds time.
fn clock(unix_ms: u64) -> String {
    let s = unix_ms / 1000;
    format!(
        "{:02}:{:02}:{:02} UTC",
        (s % 86400) / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

/// `12s ago (14:03:07 UTC)`.
fn when(now_ms: u64, at_ms: u64) -> String {
    let ago = now_ms.saturating_sub(at_ms) as f64 / 1000.0;
    format!("{} ago ({})", duration(ago), clock(at_ms))
}

fn rate(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;gap:16px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
header .meta{opacity:.75;font-size:13px}
main{padding:8px 24px 32px}
h2{font-size:15px;margin:22px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e7}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eceff3;vertical-align:top}
th{background:#eef1f5;font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
.up{background:#d9f5e0;color:#14632b}.down{background:#fde0df;color:#9b1c16}.untested{background:#eceff3;color:#555}
.reason{color:#9b1c16;font-size:13px}
.muted{color:#6b7280;font-size:12px}
.bar{background:#eceff3;border-radius:3px;height:6px;width:140px;margin-top:4px}
.bar i{display:block;height:6px;border-radius:3px;background:#3b82f6}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
button{font:inherit;font-size:12px;padding:3px 10px;border:1px solid #9aa3b2;border-radius:4px;background:#fff;cursor:pointer}
button:disabled{opacity:.5;cursor:wait}
#result{white-space:pre-wrap;background:#fff;border:1px solid #dde1e7;padding:8px 10px;margin-top:8px;display:none}
.actions{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
"#;

/// The script: refresh `#live`, and POST the actions. Kept small and inline.
const SCRIPT: &str = r#"
(function(){
var busy=false;
function refresh(){
  if(busy){return;}
  fetch(location.pathname,{cache:'no-store'}).then(function(r){return r.text();}).then(function(t){
    var doc=new DOMParser().parseFromString(t,'text/html');
    var fresh=doc.getElementById('live');var live=document.getElementById('live');
    if(fresh&&live&&!busy){live.innerHTML=fresh.innerHTML;}
  }).catch(function(){});
}
setInterval(refresh, REFRESH_MS);
function show(text){var r=document.getElementById('result');r.style.display='block';r.textContent=text;}
document.addEventListener('click',function(ev){
  var b=ev.target.closest('button[data-action]');if(!b){return;}
  ev.preventDefault();busy=true;b.disabled=true;
  var body=new URLSearchParams();
  if(b.dataset.destination){body.set('destination',b.dataset.destination);}
  if(b.dataset.action==='send-test-trace'){var p=document.getElementById('pipeline');if(p&&p.value){body.set('pipeline',p.value);}}
  show(b.dataset.action==='send-test-trace'?'Sending a test trace and following it...':'Testing '+b.dataset.destination+'...');
  fetch('/actions/'+b.dataset.action,{method:'POST',body:body}).then(function(r){return r.json();}).then(function(j){
    show(j.text||JSON.stringify(j));
  }).catch(function(e){show('failed: '+e);}).then(function(){busy=false;b.disabled=false;refresh();});
});
})();
"#;

/// Renders the whole page.
pub fn page(status: &Status) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let ready = if status.ready {
        r#"<span class="badge up">ready</span>"#
    } else {
        r#"<span class="badge down">not ready</span>"#
    };
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>tracecast status</title>
<style>{STYLE}</style></head>
<body>
<header><h1>tracecast</h1>{ready}<span class="meta">version {} · up {} · page refreshes every {REFRESH_SECONDS}s</span></header>
<main>
<section>
<h2>Try it</h2>
<div class="actions">
<label>Pipeline <select id="pipeline">"#,
        esc(&status.version),
        duration(status.uptime_seconds as f64),
    );
    for p in &status.pipelines {
        let _ = write!(out, r#"<option value="{0}">{0}</option>"#, esc(&p.name));
    }
    out.push_str(
        r#"</select></label>
<button type="button" data-action="send-test-trace">Send a test trace</button>
<span class="muted">sends a gateway-like trace to the receiver and shows where it went (also: <code>tracecast send-test-trace</code>)</span>
</div>
<div id="result" role="status"></div>
</section>
<div id="live">"#,
    );
    live(&mut out, status);
    let script = SCRIPT.replace("REFRESH_MS", &(REFRESH_SECONDS * 1000).to_string());
    let _ = write!(
        out,
        "</div>\n</main>\n<script>{script}</script>\n</body></html>\n"
    );
    out
}

/// The part the script refreshes.
fn live(out: &mut String, s: &Status) {
    let now = s.now_unix_ms;
    let _ = write!(
        out,
        r#"<p class="muted" id="collected">as of {}</p>"#,
        clock(now)
    );

    out.push_str("<h2>Pipelines</h2><table id=\"pipelines\"><tr><th>Pipeline</th><th>Receivers</th><th>Processors</th><th>Exporters</th></tr>");
    for p in &s.pipelines {
        // Processors run in order (an arrow); receivers and exporters side by side.
        let list = |v: &[String], sep: &str| {
            if v.is_empty() {
                "<span class=\"muted\">none</span>".to_string()
            } else {
                v.iter()
                    .map(|i| format!("<code>{}</code>", esc(i)))
                    .collect::<Vec<_>>()
                    .join(sep)
            }
        };
        let _ = write!(
            out,
            "<tr data-pipeline=\"{}\"><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.name),
            esc(&p.name),
            list(&p.receivers, ", "),
            list(&p.processors, " → "),
            list(&p.exporters, ", ")
        );
    }
    out.push_str("</table>");

    out.push_str("<h2>Receivers</h2><table id=\"receivers\"><tr><th>Receiver</th><th>Listening on</th><th>Spans accepted</th><th>Spans/s (1 min)</th></tr>");
    for r in &s.receivers {
        let addr = match (&r.address, &r.path) {
            (Some(a), Some(p)) => format!("<code>{}{}</code>", esc(a), esc(p)),
            (Some(a), None) => format!("<code>{}</code>", esc(a)),
            _ => "<span class=\"muted\">not started</span>".into(),
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{addr}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&r.id),
            r.spans_accepted,
            rate(r.spans_per_second)
        );
    }
    out.push_str("</table>");

    out.push_str("<h2>Destinations</h2><table id=\"destinations\"><tr><th>Destination</th><th>State</th><th>Spans/s in / out (1 min)</th><th>Sent</th><th>Retries</th><th>Dead letters</th><th></th></tr>");
    for d in &s.destinations {
        let state = match d.state.as_str() {
            "up" => r#"<span class="badge up">up</span>"#,
            "down" => r#"<span class="badge down">down</span>"#,
            _ => r#"<span class="badge untested">not tested yet</span>"#,
        };
        let mut detail = String::new();
        if let Some(why) = &d.reason {
            let _ = write!(detail, "<div class=\"reason\">{}</div>", esc(why));
        }
        if let Some(at) = d.checked_unix_ms {
            let _ = write!(
                detail,
                "<div class=\"muted\">checked {}</div>",
                when(now, at)
            );
        }
        let mut letters = format!(
            "{} in folder<div class=\"muted\">{} since start</div>",
            d.dead_letter_files, d.dead_letters
        );
        if let Some(why) = &d.newest_dead_letter_reason {
            let _ = write!(letters, "<div class=\"muted\">newest: {}</div>", esc(why));
        }
        if let Some(e) = &d.dead_letter_folder_error {
            let _ = write!(letters, "<div class=\"reason\">{}</div>", esc(e));
        }
        let _ = write!(
            out,
            "<tr data-destination=\"{id}\" data-state=\"{st}\"><td><code>{id}</code><div class=\"muted\">{ty} · {pipes}</div></td><td>{state}{detail}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{letters}</td><td><button type=\"button\" data-action=\"test-connection\" data-destination=\"{id}\">Test connection</button></td></tr>",
            rate(d.spans_in_per_second),
            rate(d.spans_out_per_second),
            d.spans_sent,
            d.retries,
            id = esc(&d.id),
            st = esc(&d.state),
            ty = esc(&d.type_name),
            pipes = esc(&d.pipelines.join(", ")),
        );
    }
    out.push_str("</table>");

    out.push_str("<h2>Durable queues</h2><table id=\"queues\"><tr><th>Pipeline</th><th>Undelivered entries</th><th>Size / max_size</th><th>Oldest undelivered</th><th>Quarantined</th><th>Delivery retries</th></tr>");
    for q in &s.queues {
        let pct = if q.max_bytes == 0 {
            0.0
        } else {
            (q.bytes as f64 / q.max_bytes as f64 * 100.0).min(100.0)
        };
        let oldest = q
            .oldest_entry_age_seconds
            .map_or_else(|| "<span class=\"muted\">—</span>".to_string(), duration);
        let mut quarantined = format!(
            "{} in folder<div class=\"muted\">{} since start</div>",
            q.quarantine_files, q.quarantined
        );
        if let Some(why) = &q.newest_quarantine_reason {
            let _ = write!(
                quarantined,
                "<div class=\"muted\">newest: {}</div>",
                esc(why)
            );
        }
        let _ = write!(
            out,
            "<tr data-queue=\"{p}\"><td><b>{p}</b></td><td class=\"num\" data-entries=\"{e}\">{e}</td><td>{} / {} ({pct:.1}%)<div class=\"bar\"><i style=\"width:{pct:.1}%\"></i></div></td><td>{oldest}</td><td>{quarantined}</td><td class=\"num\">{}</td></tr>",
            bytes(q.bytes),
            bytes(q.max_bytes),
            q.delivery_retries,
            p = esc(&q.pipeline),
            e = q.entries,
        );
    }
    out.push_str("</table>");

    out.push_str("<h2>Last trace files written</h2><table id=\"files\"><tr><th>When</th><th>Exporter</th><th>Object key</th><th>Size</th><th>Spans</th></tr>");
    if s.recent_files.is_empty() {
        out.push_str("<tr><td colspan=\"5\" class=\"muted\">none yet</td></tr>");
    }
    for f in s.recent_files.iter().take(PAGE_ROWS) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            when(now, f.unix_ms),
            esc(&f.exporter),
            esc(&f.key),
            bytes(f.bytes),
            f.spans
        );
    }
    out.push_str("</table>");

    out.push_str("<h2>Last OTLP exports</h2><table id=\"exports\"><tr><th>When</th><th>Exporter</th><th>Status</th><th>Spans</th><th>Latency</th></tr>");
    if s.recent_exports.is_empty() {
        out.push_str("<tr><td colspan=\"5\" class=\"muted\">none yet</td></tr>");
    }
    for e in s.recent_exports.iter().take(PAGE_ROWS) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>HTTP {}</td><td class=\"num\">{}</td><td class=\"num\">{:.0} ms</td></tr>",
            when(now, e.unix_ms),
            esc(&e.exporter),
            e.status,
            e.spans,
            e.latency_ms
        );
    }
    out.push_str("</table>");

    out.push_str("<h2>Last failed attempts</h2><table id=\"failures\"><tr><th>When</th><th>Exporter</th><th>What happened</th><th>Spans</th></tr>");
    if s.recent_failures.is_empty() {
        out.push_str("<tr><td colspan=\"4\" class=\"muted\">none</td></tr>");
    }
    for f in s.recent_failures.iter().take(PAGE_ROWS) {
        let what = if f.gave_up {
            "gave up, kept in the dead-letter folder"
        } else {
            "retrying"
        };
        let key = f
            .key
            .as_deref()
            .map(|k| format!("<div class=\"muted\"><code>{}</code></div>", esc(k)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td><span class=\"reason\">{}</span><div class=\"muted\">{what}</div>{key}</td><td class=\"num\">{}</td></tr>",
            when(now, f.unix_ms),
            esc(&f.exporter),
            esc(&f.reason),
            f.spans
        );
    }
    out.push_str("</table>");
    out.push_str("<p class=\"muted\">The same data as JSON: <a href=\"/status.json\">/status.json</a> · Prometheus: <a href=\"/metrics\">/metrics</a></p>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"a"&'b'"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration(59.9), "59s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(7260.0), "2h 01m");
        assert_eq!(clock(3_723_000), "01:02:03 UTC");
    }
}
