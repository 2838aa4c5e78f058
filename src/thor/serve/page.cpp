// See page.h.
#include "thor/serve/page.h"

namespace thor::serve {

const char* const kPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>thor translate</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  .sub { color: #666; margin-top: 0; }
  .row { display: flex; gap: 1rem; flex-wrap: wrap; }
  .col { flex: 1 1 20rem; }
  textarea, #out { width: 100%; box-sizing: border-box; min-height: 9rem; padding: .6rem; font: inherit;
                   border: 1px solid #bbb; border-radius: 6px; }
  #out { background: #f6f6f6; white-space: pre-wrap; }
  select, button { font: inherit; padding: .3rem .6rem; }
  button { background: #2d5be3; color: #fff; border: 0; border-radius: 6px; cursor: pointer; }
  #status { color: #666; margin-left: .6rem; }
  .error { color: #b00020; }
</style>
</head>
<body>
<h1>thor translate</h1>
<p class="sub">A Transformer with stochastic experts, served by <code>thor serve</code>.</p>
<p>
  <label>from <select id="source"></select></label>
  <label>to <select id="target"></select></label>
  <button id="go" type="button">Translate</button>
  <span id="status"></span>
</p>
<div class="row">
  <div class="col"><textarea id="q" placeholder="Text to translate, one sentence per line"></textarea></div>
  <div class="col"><div id="out" aria-live="polite"></div></div>
</div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let languages = [];
function fillTargets() {
  const src = languages.find((l) => l.code === $("source").value);
  $("target").innerHTML = "";
  for (const t of (src ? src.targets : [])) $("target").add(new Option(t, t));
}
async function translate() {
  const lines = $("q").value.split("\n");
  $("status").textContent = "translating...";
  $("status").className = "";
  const t0 = performance.now();
  try {
    const r = await fetch("/translate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ q: lines, source: $("source").value, target: $("target").value }),
    });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || r.statusText);
    $("out").textContent = j.translatedText.join("\n");
    $("status").textContent = (performance.now() - t0).toFixed(0) + " ms";
    document.body.dataset.state = "done";
  } catch (e) {
    $("status").textContent = e.message;
    $("status").className = "error";
    document.body.dataset.state = "error";
  }
}
async function start() {
  const r = await fetch("/languages");
  languages = await r.json();
  for (const l of languages) if (l.targets.length) $("source").add(new Option(l.name + " (" + l.code + ")", l.code));
  fillTargets();
  $("source").addEventListener("change", fillTargets);
  $("go").addEventListener("click", translate);
  const params = new URLSearchParams(location.search);
  if (params.has("q")) $("q").value = params.get("q");
  if (params.get("auto") === "1") await translate();
}
start();
</script>
</body>
</html>
)HTML";

}  // namespace thor::serve
