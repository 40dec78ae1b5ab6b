"""The browser page of the MJPEG view: the stream and a stats table polled every second.

It passes the page's own ``?token=`` on to ``/stream`` and ``/stats``, so a view that needs a token works from
the URL printed at start.
"""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ margin: 0; background: #111; color: #ddd; font: 14px/1.4 system-ui, sans-serif; }}
 header {{ padding: 8px 14px; background: #222; font-weight: 600; }}
 main {{ display: flex; flex-wrap: wrap; gap: 14px; padding: 14px; align-items: flex-start; }}
 #view {{ max-width: min(100%, 1280px); background: #000; min-width: 320px; min-height: 180px; }}
 table {{ border-collapse: collapse; min-width: 240px; }}
 td {{ padding: 2px 10px; border-bottom: 1px solid #333; }} td:last-child {{ text-align: right; }}
 #state {{ color: #8c8; }}
</style></head>
<body><header>{title} &middot; <span id="state">connecting</span></header>
<main><img id="view" alt="live stream"><table id="stats"></table></main>
<script>
 const auth = location.search.includes("token=") ? "?" + new URLSearchParams(location.search).toString() : "";
 // The stream starts after the page has loaded, so the load event fires although /stream never ends.
 window.addEventListener("load", () => {{
   const img = document.getElementById("view");
   img.onload = () => {{ document.getElementById("state").textContent = "streaming"; }};
   img.src = "/stream" + auth;
 }});
 function fmt(v) {{ return typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(2)) : String(v); }}
 async function poll() {{
   try {{
     const s = await (await fetch("/stats" + auth, {{cache: "no-store"}})).json();
     const state = document.getElementById("state");
     if (s.status === "reconnecting") state.textContent = "reconnecting";
     else if (state.textContent === "reconnecting") state.textContent = "streaming";
     const rows = Object.entries(s).filter(([k, v]) => typeof v !== "object")
       .map(([k, v]) => `<tr><td>${{k}}</td><td>${{fmt(v)}}</td></tr>`);
     document.getElementById("stats").innerHTML = rows.join("");
   }} catch (e) {{ document.getElementById("state").textContent = "disconnected"; }}
 }}
 poll(); setInterval(poll, 1000);
</script></body></html>
"""
