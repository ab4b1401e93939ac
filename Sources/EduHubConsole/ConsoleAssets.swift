import EduHubRPC

/// The console's stylesheet and its one small script, compiled into the binary (no build step,
/// nothing fetched from elsewhere: the Content-Security-Policy allows only this origin).
enum ConsoleAssets {
  static func serve(_ path: String, method: String) -> HTTPResponse {
    guard method == "GET" || method == "HEAD" else { return .text(405, "GET only") }
    let (type, body): (String, String)
    switch path {
    case "/assets/console.css": (type, body) = ("text/css; charset=utf-8", css)
    case "/assets/console.js": (type, body) = ("text/javascript; charset=utf-8", script)
    default: return .text(404, "not found")
    }
    return HTTPResponse(
      status: 200,
      headers: [("content-type", type), ("cache-control", "public, max-age=3600"), ("x-content-type-options", "nosniff")],
      body: method == "HEAD" ? [] : Array(body.utf8))
  }

  /// Chinese first: system CJK fonts (Noto/Source Han on Linux, PingFang on Apple, YaHei on
  /// Windows), a line height CJK text needs, no faux italics, and strict line breaking so
  /// punctuation never starts a line.
  static let css = """
    :root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --accent: #0b5cad; --accent-ink: #ffffff; --warn: #8a5a00; --danger: #b42318; --paper: #ffffff; --shade: #f6f8fa; }
    * { box-sizing: border-box; }
    html { font-family: "PingFang SC", "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "WenQuanYi Micro Hei", system-ui, sans-serif; font-size: 16px; color: var(--ink); background: var(--paper); }
    body { margin: 0; line-height: 1.75; line-break: strict; word-break: normal; overflow-wrap: anywhere; text-autospace: normal; }
    em, i { font-style: normal; font-weight: 600; }
    h1 { font-size: 1.6rem; margin: .5rem 0 1rem; font-weight: 600; letter-spacing: .02em; }
    h2 { font-size: 1.2rem; margin: 1.6rem 0 .6rem; font-weight: 600; }
    h3 { font-size: 1.05rem; margin: .4rem 0; font-weight: 600; }
    a { color: var(--accent); }
    a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible { outline: 3px solid #f0b400; outline-offset: 2px; }
    code, pre { font-family: "Noto Sans Mono CJK SC", "SFMono-Regular", Menlo, Consolas, monospace; font-size: .9em; }
    pre { background: var(--shade); padding: .8rem; overflow-x: auto; white-space: pre-wrap; border-radius: 6px; }
    .skip { position: absolute; left: -999px; } .skip:focus { left: 1rem; top: 1rem; background: #fff; padding: .4rem; z-index: 10; }
    .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
    header.top { display: flex; align-items: center; gap: 1rem; padding: .6rem 1.5rem; background: #0b3d6e; color: #fff; flex-wrap: wrap; }
    header.top a.brand { color: #fff; text-decoration: none; font-weight: 600; font-size: 1.1rem; }
    header.top .node { color: #d6e4f5; font-size: .9rem; }
    header.top .logout { margin-left: auto; display: flex; gap: .6rem; align-items: center; }
    header.top .logout button { background: transparent; color: #fff; border-color: #9fc0e4; }
    nav.sections ul, nav.tabs ul { list-style: none; display: flex; flex-wrap: wrap; gap: .2rem; margin: 0; padding: 0; }
    nav.sections { background: var(--shade); border-bottom: 1px solid var(--line); padding: 0 1.5rem; }
    nav.sections a { display: inline-block; padding: .55rem .9rem; text-decoration: none; color: var(--ink); }
    nav.sections a[aria-current="page"] { border-bottom: 3px solid var(--accent); font-weight: 600; }
    nav.tabs { margin: .4rem 0; } nav.tabs a { display: inline-block; padding: .2rem .7rem; border: 1px solid var(--line); border-radius: 999px; text-decoration: none; font-size: .9rem; }
    nav.tabs a[aria-current="page"] { background: var(--accent); color: var(--accent-ink); border-color: var(--accent); }
    main { max-width: 1180px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
    footer.bottom { color: var(--muted); font-size: .85rem; text-align: center; padding: 1rem; border-top: 1px solid var(--line); }
    .muted, .meta { color: var(--muted); } .meta { font-size: .92rem; margin: .2rem 0; }
    .tag { display: inline-block; padding: 0 .5rem; border-radius: 4px; background: #e7eef7; color: #0b3d6e; font-size: .82rem; line-height: 1.6; }
    .tag.warn { background: #fff4d6; color: var(--warn); } .tag.danger { background: #fde8e7; color: var(--danger); } .tag.state { background: #e6f4ea; color: #1a6b33; }
    .flash { background: #e6f4ea; border: 1px solid #a6d8b5; padding: .5rem .8rem; border-radius: 6px; }
    .error, .failure p:first-child { color: var(--danger); } .notice { background: #fff4d6; padding: .5rem .8rem; border-radius: 6px; color: #5c3d00; }
    button, .button { font: inherit; padding: .35rem 1rem; border: 1px solid var(--line); border-radius: 6px; background: #fff; color: var(--ink); cursor: pointer; text-decoration: none; display: inline-block; }
    button.primary, .button.primary { background: var(--accent); border-color: var(--accent); color: var(--accent-ink); }
    button.danger { color: var(--danger); border-color: #f0b7b2; }
    input, select, textarea { font: inherit; padding: .35rem .5rem; border: 1px solid #8c959f; border-radius: 6px; max-width: 100%; }
    form.stack { display: flex; flex-direction: column; gap: .35rem; max-width: 640px; }
    form.stack label { font-weight: 600; margin-top: .4rem; } form.stack label.check { font-weight: normal; margin: 0; }
    form.inline { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: .4rem 0; }
    fieldset { border: 1px solid var(--line); border-radius: 6px; padding: .5rem .8rem; } legend { font-weight: 600; }
    .actions { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: .6rem 0; }
    .search { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; margin-bottom: 1rem; } .search input[type=search] { flex: 1 1 320px; }
    .results-layout { display: grid; grid-template-columns: 220px 1fr; gap: 1.5rem; }
    @media (max-width: 760px) { .results-layout { grid-template-columns: 1fr; } }
    .facets h2 { font-size: 1rem; margin: .8rem 0 .3rem; } .facets ul { list-style: none; padding: 0; margin: 0; } .facets a { text-decoration: none; }
    .facets a.selected { font-weight: 700; } .facets .count { color: var(--muted); font-size: .85rem; }
    ol.resources { list-style: none; padding: 0; margin: 0; } li.resource { border-bottom: 1px solid var(--line); padding: .6rem 0; } li.resource h2 { margin: 0; font-size: 1.1rem; }
    .code { color: var(--muted); font-size: .85rem; margin: 0; }
    table { border-collapse: collapse; width: 100%; margin: .4rem 0; } th, td { text-align: left; border-bottom: 1px solid var(--line); padding: .35rem .5rem; vertical-align: top; }
    th { background: var(--shade); font-weight: 600; } tr.overdue td, tr.offline td { background: #fff6f5; }
    .scroll { overflow-x: auto; }
    .card { border: 1px solid var(--line); border-radius: 8px; padding: .6rem 1rem; margin: .6rem 0; }
    ol.steps, ol.timeline { padding-left: 1.4rem; } .timeline .superseded { text-decoration: line-through; color: var(--muted); }
    ul.plain { padding-left: 1.2rem; }
    dl.record { display: grid; grid-template-columns: minmax(6em, max-content) 1fr; gap: .3rem 1.2rem; }
    dl.record dt { color: var(--muted); } dl.record dd { margin: 0; font-weight: 600; }
    ul.figures { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: .4rem 1.2rem; }
    ul.figures li { border-bottom: 1px solid var(--line); padding: .3rem 0; } ul.figures .label { display: block; color: var(--muted); font-size: .9rem; }
    ul.figures strong { font-size: 1.4rem; }
    .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1.5rem; } figure { margin: 0; } figcaption { color: var(--muted); font-size: .9rem; }
    svg.chart { width: 100%; height: auto; font-family: inherit; } svg .bar { fill: #3b7bc4; } svg .axis, svg .value { fill: #444c56; font-size: 12px; }
    svg .grid { stroke: #e1e4e8; stroke-width: 1; } svg .line { fill: none; stroke: #0b5cad; stroke-width: 2.5; } svg .dot { fill: #0b5cad; }
    .signin { max-width: 420px; } .prose { white-space: pre-wrap; }
    """

  /// Asks before an irreversible button (revoke, reject) sends its form.
  static let script = """
    "use strict";
    document.addEventListener("click", function (event) {
      var button = event.target.closest("button.danger");
      if (button && !window.confirm("确定要" + button.textContent.trim() + "吗？此操作会记入审计日志。")) { event.preventDefault(); }
    });
    """
}
