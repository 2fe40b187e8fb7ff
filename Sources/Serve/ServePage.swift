// The page GET / serves: plain HTML, CSS and JavaScript in the binary, no other files. It reads
// GET /v1/model for the title and labels, posts the box's text to /v1/classify and draws the
// predicted label and a bar per class (and a note when the text was longer than the model reads). `/?text=…` opens with that text classified (a link to share).
enum ServePage {
    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Retort classifier</title>
    <style>
      body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }
      h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
      #about { color: #666; font-size: 0.9rem; margin-top: 0; }
      textarea { width: 100%; box-sizing: border-box; font: inherit; padding: 0.6rem; border: 1px solid #bbb; border-radius: 6px; }
      button { font: inherit; padding: 0.4rem 1.1rem; border-radius: 6px; border: 1px solid #2456c7; background: #2f6fe4; color: white; cursor: pointer; }
      button:disabled { opacity: 0.6; cursor: default; }
      .examples { margin: 0.6rem 0; font-size: 0.9rem; color: #666; }
      .examples a { margin-right: 0.8rem; color: #2456c7; cursor: pointer; text-decoration: underline; }
      #result { margin-top: 1.2rem; }
      #label { font-size: 1.3rem; font-weight: 600; }
      .row { display: grid; grid-template-columns: 11rem 1fr 4rem; align-items: center; gap: 0.6rem; margin: 0.3rem 0; }
      .track { background: #eee; border-radius: 4px; height: 0.9rem; }
      .bar { background: #2f6fe4; border-radius: 4px; height: 100%; }
      .best .bar { background: #d9480f; }
      .error { color: #b00020; }
      #truncated { color: #8a5a00; font-size: 0.9rem; }
    </style>
    </head>
    <body>
    <h1 id="title">Retort classifier</h1>
    <p id="about">loading…</p>
    <textarea id="text" rows="4" placeholder="Type a text to classify"></textarea>
    <div class="examples">Try: <a>I hate you</a><a>Have a wonderful day, friend!</a><a>this movie was a waste of two hours</a></div>
    <button id="classify">Classify</button>
    <div id="result"></div>
    <script>
    const box = document.getElementById("text"), button = document.getElementById("classify"), result = document.getElementById("result");
    const model = fetch("/v1/model").then(r => r.json());
    model.then(m => {
      document.getElementById("title").textContent = m.name;
      document.getElementById("about").textContent =
        `${m.family}, ${(m.parameters / 1e6).toFixed(1)} M parameters, ${m.precision} on ${m.device}; labels: ${m.labels.join(", ")}`;
    }).catch(() => { document.getElementById("about").textContent = "model information unavailable"; });

    function show(error) {
      result.innerHTML = "";
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = error;
      result.appendChild(p);
    }

    async function classify() {
      const text = box.value;
      if (!text.trim()) { show("Type a text first."); return; }
      button.disabled = true;
      try {
        const response = await fetch("/v1/classify", { method: "POST", headers: { "Content-Type": "application/json" },
                                                       body: JSON.stringify({ texts: [text] }) });
        const body = await response.json();
        if (!response.ok) { show(body.error ? body.error.message : `HTTP ${response.status}`); return; }
        const answer = body.results[0];
        result.innerHTML = "";
        const label = document.createElement("div");
        label.id = "label";
        label.textContent = answer.label;
        result.appendChild(label);
        const classes = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
        for (const [name, p] of classes) {
          const row = document.createElement("div");
          row.className = name === answer.label ? "row best" : "row";
          row.dataset.label = name;
          row.innerHTML = '<span class="name"></span><div class="track"><div class="bar"></div></div><span class="p"></span>';
          row.querySelector(".name").textContent = name;
          row.querySelector(".bar").style.width = `${(100 * p).toFixed(1)}%`;
          row.querySelector(".p").textContent = `${(100 * p).toFixed(1)} %`;
          result.appendChild(row);
        }
        if (answer.truncated) {
          const maxTokens = await model.then(m => m.max_tokens, () => null);
          const note = document.createElement("p");
          note.id = "truncated";
          note.textContent = `This text is longer than the model reads${maxTokens ? ` (${maxTokens} tokens)` : ""}: only its beginning was classified.`;
          result.appendChild(note);
        }
      } catch (e) {
        show(`The server did not answer: ${e}`);
      } finally {
        button.disabled = false;
      }
    }

    button.addEventListener("click", classify);
    box.addEventListener("keydown", e => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) classify(); });
    for (const a of document.querySelectorAll(".examples a")) a.addEventListener("click", () => { box.value = a.textContent; classify(); });
    const shared = new URLSearchParams(location.search).get("text");
    if (shared) { box.value = shared; button.click(); }
    </script>
    </body>
    </html>
    """#
}
