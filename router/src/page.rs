//! The one HTML layout of the router's pages — the dashboard and every error
//! page: a self-contained document (inline CSS, an inline SVG favicon, no
//! request to anything but the router), light and dark by
//! `prefers-color-scheme`, readable down to 360 px, with landmarks and a
//! link home to the dashboard on every page.

/// The favicon: a rounded square with a fork, in the accent colour.
pub const FAVICON_SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
<rect width=\"32\" height=\"32\" rx=\"7\" fill=\"#0969da\"/>\
<path d=\"M10 7v6a6 6 0 0 0 6 6 6 6 0 0 0 6-6V7M16 19v6\" fill=\"none\" stroke=\"#fff\" stroke-width=\"3\" \
stroke-linecap=\"round\"/></svg>";

const STYLE: &str = "<style>\
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#57606a;--line:#d0d7de;--accent:#0550ae;\
--ok:#1a7f37;--bad:#c4232d;--warn:#8a5c00;--code:#f6f8fa}\
@media(prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9da7b3;--line:#30363d;\
--accent:#6cb6ff;--ok:#4ac26b;--bad:#ff7b72;--warn:#e3b341;--code:#161b22}}\
*{box-sizing:border-box}html{-webkit-text-size-adjust:100%}\
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,sans-serif}\
header,main,footer{max-width:60rem;margin:0 auto;padding:.6rem 1rem}\
header{display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:center;border-bottom:1px solid var(--line)}\
header a{font-weight:600;text-decoration:none;color:var(--fg)}header span{color:var(--muted)}\
footer{color:var(--muted);font-size:.85rem}\
a{color:var(--accent)}a:focus-visible,button:focus-visible{outline:2px solid var(--accent);outline-offset:2px}\
h1{font-size:1.4rem;margin:.8rem 0 .4rem}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}\
code{background:var(--code);border:1px solid var(--line);border-radius:4px;padding:0 .3em;overflow-wrap:anywhere}\
pre{background:var(--code);border:1px solid var(--line);border-radius:6px;padding:.5rem .7rem;overflow-x:auto}\
pre.log{font-size:.8rem;margin:.5rem 0 0;white-space:pre-wrap;overflow-wrap:anywhere}\
.card{border:1px solid var(--line);border-radius:8px;padding:.6rem .8rem;margin:.6rem 0}\
.card h3{margin:0;font-size:1rem;display:flex;flex-wrap:wrap;gap:.2rem .6rem;align-items:baseline}\
.badge{font-size:.78rem;font-weight:600;padding:0 .55em;border-radius:1em;border:1px solid currentColor}\
.live,.up{color:var(--ok)}.crashed,.down{color:var(--bad)}.starting{color:var(--warn)}.muted{color:var(--muted)}\
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.1rem .8rem;margin:.4rem 0 0}\
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}\
button{font:inherit;font-size:.78rem;color:var(--fg);background:var(--code);border:1px solid var(--line);\
border-radius:4px;padding:0 .45em;margin-left:.4em;cursor:pointer}html:not(.js) .js-only{display:none}\
.stop{color:var(--bad);margin-left:auto}\
ul{padding-left:1.2rem}\
</style>";

/// A whole page: `title` in the tab, `main` (HTML) as its content;
/// `dashboard` is the dashboard's URL (`http://localhost:7355/`), linked
/// from the header; `refresh` reloads the page after that many seconds
/// (the 503 waiting page), `script` runs at the end (the dashboard's).
pub struct Layout<'a> {
    pub title: &'a str,
    pub dashboard: &'a str,
    pub main: String,
    pub refresh: Option<u32>,
    pub script: Option<&'a str>,
    /// More `<head>` elements (the dashboard's token).
    pub head: String,
}

impl Layout<'_> {
    pub fn render(&self) -> String {
        let refresh = self.refresh.map_or_else(String::new, |s| format!("<meta http-equiv=refresh content={s}>"));
        let script = self.script.map_or_else(String::new, |s| format!("<script>{s}</script>"));
        format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width,initial-scale=1\">{refresh}{head}\
             <title>{title}</title><link rel=icon href=\"data:image/svg+xml,{icon}\">{STYLE}</head><body>\
             <header><a href=\"{home}\">agentfs</a><span>local app router</span></header>\
             <main id=main>{main}</main>\
             <footer><a href=\"{home}\">Dashboard</a> · <code>agentfs ps</code> lists the same from a terminal</footer>\
             {script}</body></html>\n",
            title = escape(self.title),
            icon = icon_data(),
            home = escape(self.dashboard),
            main = self.main,
            head = self.head,
        )
    }
}

/// The favicon as a `data:` URL body (percent-encoding what a URL cannot hold).
fn icon_data() -> String {
    FAVICON_SVG.replace('#', "%23").replace('"', "'").replace('<', "%3C").replace('>', "%3E")
}

/// Escapes text for HTML element and attribute content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `s` and shows what is between backticks as `<code>`.
pub fn prose(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for (n, part) in s.split('`').enumerate() {
        if n % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", escape(part)));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_links_home_and_carries_its_icon() {
        let page = Layout {
            title: "404 <x>",
            dashboard: "http://localhost:7355/",
            main: "<p>hi</p>".into(),
            refresh: None,
            script: None,
            head: String::new(),
        }
        .render();
        assert!(page.contains("<title>404 &lt;x&gt;</title>") && page.contains("<a href=\"http://localhost:7355/\">"));
        assert!(
            page.contains("<main id=main><p>hi</p></main>")
                && page.contains("rel=icon href=\"data:image/svg+xml,%3Csvg")
        );
        assert!(!icon_data().contains(['#', '"', '<', '>']));
    }

    #[test]
    fn prose_shows_commands_as_code() {
        assert_eq!(prose("run `agentfs logs <x>` & see"), "run <code>agentfs logs &lt;x&gt;</code> &amp; see");
    }
}
