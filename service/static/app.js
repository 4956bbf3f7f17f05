// The lxmert serve page: choose, drop or paste a photo, ask questions, and show the answers, the
// detector's regions and the model's attention over the photo. Plain JavaScript, no build step, no
// network but this server; the API is GET /v1/info and POST /v1/<task> (docs/service.md).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("ask-form");
  const fileInput = $("image-input");
  const dropZone = $("drop-zone");
  const dropText = $("drop-text");
  const preview = $("preview");
  const questionsInput = $("questions");
  const apiKeyInput = $("api-key");
  const askButton = $("ask");
  const message = $("message");
  const results = $("results");
  const canvas = $("canvas");
  const topN = $("top-n");
  const attentionQuestion = $("attention-question");
  const attentionWord = $("attention-word");

  const KEY_STORAGE = "lxmert-api-key";
  const TOP_K = 5;
  const HEAT_CELL = 4; // canvas pixels per heat-map cell: the map is smoothed when scaled up anyway
  const HEAT_ALPHA = 0.7; // opacity of the hottest cell
  // A small colormap (cool to hot), interpolated linearly between the stops; style.css's .legend-bar
  // shows the same stops.
  const HEAT_STOPS = [
    [49, 54, 149],
    [116, 173, 209],
    [254, 224, 144],
    [244, 109, 67],
    [165, 0, 38],
  ];

  const state = {
    info: null, // the answer of /v1/info, null until (or unless) it arrived
    file: null, // the chosen photo: a File or a pasted Blob
    image: null, // that photo decoded by the browser (an ImageBitmap)
    shown: null, // {image, data}: the photo and the API response the results section shows
    drawnWidth: 0,
  };

  // ---------------------------------------------------------------- messages

  function showError(text) {
    message.textContent = text;
  }

  function clearError() {
    message.textContent = "";
  }

  // The API's errors are {"error": {"status", "field", "message"}}; anything else gets a generic line.
  function describeError(status, body) {
    const error = body && body.error;
    if (error && error.message) {
      const field = error.field ? ` (${error.field})` : "";
      return `Error ${error.status || status}${field}: ${error.message}`;
    }
    return `Error ${status}: the server gave no explanation.`;
  }

  function authHeaders() {
    const headers = { Accept: "application/json" };
    const key = apiKeyInput.value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    return headers;
  }

  // ---------------------------------------------------------------- start: what the server offers

  async function loadInfo() {
    try {
      const response = await fetch("/v1/info", { headers: authHeaders() });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        if (response.status === 401) $("api-key-row").hidden = false;
        throw new Error(describeError(response.status, body));
      }
      state.info = body;
    } catch (error) {
      showError(`Could not read the server's settings (/v1/info): ${error.message}`);
      document.documentElement.dataset.info = "failed";
      return;
    }
    const { tasks = [], api_key_required: keyRequired, limits = {} } = state.info;
    $("task-fieldset").hidden = !tasks.includes("gqa");
    if (keyRequired) $("api-key-row").hidden = false;
    if (limits.max_questions) {
      $("questions-hint").textContent =
        `Up to ${limits.max_questions} questions of at most ${limits.max_question_chars} characters. ` +
        "Ctrl+Enter asks.";
    }
    document.documentElement.dataset.info = "loaded";
  }

  // ---------------------------------------------------------------- the photo: choose, drop, paste

  function setPhoto(file) {
    clearError();
    const limits = (state.info && state.info.limits) || {};
    const name = file.name || "the pasted photo";
    if (limits.max_upload_bytes && file.size > limits.max_upload_bytes) {
      const mb = (n) => (n / 1048576).toFixed(1);
      showError(`${name} is ${mb(file.size)} MB; this server takes at most ${mb(limits.max_upload_bytes)} MB.`);
      return;
    }
    // createImageBitmap decodes the file itself: no blob: or data: URL, which a strict Content-Security-Policy
    // (img-src 'self') would block. The page draws on the photo, so a file the browser cannot decode is
    // refused here already.
    createImageBitmap(file).then(
      (bitmap) => {
        state.file = file;
        state.image = bitmap;
        drawPreview(bitmap);
        preview.setAttribute("aria-label", `Preview of ${name}`);
        preview.hidden = false;
        dropText.textContent = `${name}, ${bitmap.width}×${bitmap.height}: choose another photo`;
      },
      () => {
        state.file = state.image = null;
        preview.hidden = true;
        dropText.textContent = "Choose a photo";
        showError(`${name} is not an image this browser can read: choose a JPEG, PNG or WebP photo.`);
      },
    );
  }

  function drawPreview(bitmap) {
    const scale = Math.min(1, 640 / bitmap.width, 480 / bitmap.height);
    preview.width = Math.max(1, Math.round(bitmap.width * scale));
    preview.height = Math.max(1, Math.round(bitmap.height * scale));
    preview.getContext("2d").drawImage(bitmap, 0, 0, preview.width, preview.height);
  }

  dropZone.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) setPhoto(fileInput.files[0]);
  });

  // Drops are taken anywhere on the page (a missed drop would otherwise navigate away from it).
  let dragDepth = 0;
  document.addEventListener("dragenter", (event) => {
    event.preventDefault();
    dragDepth += 1;
    dropZone.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropZone.classList.remove("dragging");
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    dropZone.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) setPhoto(file);
  });

  // Pasting text into the questions stays a text paste; only an image on the clipboard is taken.
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? Array.from(event.clipboardData.items) : [];
    const item = items.find((it) => it.kind === "file" && it.type.startsWith("image/"));
    if (!item) return;
    event.preventDefault();
    setPhoto(item.getAsFile());
  });

  // ---------------------------------------------------------------- asking

  apiKeyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  apiKeyInput.addEventListener("input", () => sessionStorage.setItem(KEY_STORAGE, apiKeyInput.value));

  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!askButton.disabled) ask();
  });

  function setBusy(busy) {
    askButton.disabled = busy;
    $("busy").hidden = !busy;
    results.setAttribute("aria-busy", String(busy));
  }

  async function ask() {
    clearError();
    const questions = questionsInput.value
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean);
    if (!state.file) {
      showError("Choose a photo first.");
      dropZone.focus();
      return;
    }
    if (!questions.length) {
      showError("Type a question (one per line).");
      questionsInput.focus();
      return;
    }
    const body = new FormData();
    body.append("image", state.file, state.file.name || "pasted.png");
    for (const question of questions) body.append("question", question);
    body.append("top_k", String(TOP_K));
    if (state.info && state.info.explain) body.append("explain", "true");
    const task = form.elements.task.value || "vqa";
    const image = state.image;

    setBusy(true);
    try {
      const response = await fetch(`/v1/${task}`, { method: "POST", body, headers: authHeaders() });
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        if (response.status === 401) $("api-key-row").hidden = false;
        showError(describeError(response.status, data));
        return;
      }
      showResults(image, data);
    } catch (error) {
      showError(`Network error: the server could not be reached (${error.message}).`);
    } finally {
      setBusy(false);
    }
  }

  // ---------------------------------------------------------------- results: answers and controls

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showResults(image, data) {
    state.shown = { image, data };
    const answers = $("answers");
    answers.replaceChildren();
    data.results.forEach((result) => {
      const block = element("div", "question");
      block.append(element("h3", "", result.question));
      const list = element("ol", "answer-list");
      for (const { answer, score } of result.answers) {
        const item = element("li");
        const bar = element("span", "bar");
        bar.setAttribute("aria-hidden", "true");
        const fill = element("span");
        fill.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
        bar.append(fill);
        item.append(element("span", "answer", answer), bar, element("span", "score", `${(score * 100).toFixed(1)}%`));
        list.append(item);
      }
      block.append(list);
      answers.append(block);
    });

    const explained = data.results.length > 0 && Boolean(data.results[0].attention);
    $("view-attention").disabled = !explained;
    if (!explained) document.querySelector('input[name="view"][value="regions"]').checked = true;
    attentionQuestion.replaceChildren(...data.results.map((r, i) => new Option(r.question, String(i))));
    fillWords();
    topN.max = String(Math.max(1, data.regions.length));
    topN.value = String(Math.min(Number(topN.value) || 10, Math.max(1, data.regions.length)));

    $("placeholder").hidden = true;
    results.hidden = false;
    state.drawnWidth = 0;
    draw();
  }

  // The word selector: the whole question (the mean over its words) or one token's attention row.
  function fillWords() {
    const result = state.shown && state.shown.data.results[Number(attentionQuestion.value) || 0];
    const words = (result && result.attention && result.attention.words) || [];
    attentionWord.replaceChildren(
      new Option("whole question", ""),
      ...words.map((word, i) => new Option(`${i}: ${word}`, String(i))),
    );
  }

  function currentView() {
    return document.querySelector('input[name="view"]:checked').value;
  }

  for (const radio of document.querySelectorAll('input[name="view"]')) radio.addEventListener("change", draw);
  topN.addEventListener("input", draw);
  attentionQuestion.addEventListener("change", () => {
    fillWords();
    draw();
  });
  attentionWord.addEventListener("change", draw);

  // Redraw at the new size when the window or the layout width changes (rotation, a scrollbar appearing).
  window.addEventListener("resize", draw);
  new ResizeObserver(() => {
    if (state.shown && canvas.parentElement.clientWidth !== state.drawnWidth) draw();
  }).observe(canvas.parentElement);

  // ---------------------------------------------------------------- drawing

  // The canvas is drawn at its displayed size times devicePixelRatio, so boxes and labels stay sharp;
  // boxes come in original-image pixels and are scaled by (canvas size / original size).
  function draw() {
    if (!state.shown) return;
    const { image, data } = state.shown;
    const view = currentView();
    $("top-n-row").hidden = view !== "regions";
    $("attention-question-row").hidden = view !== "attention";
    $("attention-word-row").hidden = view !== "attention";
    $("heat-legend").hidden = view !== "attention";

    const boxWidth = canvas.parentElement.clientWidth;
    state.drawnWidth = boxWidth;
    const aspect = data.image.height / data.image.width;
    // A portrait photo should not be taller than most of the window.
    const cssWidth = Math.max(1, Math.min(boxWidth, (window.innerHeight * 0.8) / aspect));
    const ratio = window.devicePixelRatio || 1;
    canvas.style.width = `${cssWidth}px`;
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssWidth * aspect * ratio);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    const scale = { x: canvas.width / data.image.width, y: canvas.height / data.image.height, ratio };

    const drawn = view === "attention" ? drawAttention(ctx, data, scale) : drawRegions(ctx, data.regions, scale);
    canvas.dataset.drawn = view;
    canvas.dataset.boxes = String(drawn);
  }

  function regionLabel(region) {
    const words = [region.attribute, region.object].filter(Boolean).join(" ");
    return `${words} ${region.object_score.toFixed(2)}`;
  }

  // Golden-angle hues: neighbouring boxes get far-apart colors. Yellow to cyan hues are light, so
  // their labels get dark text.
  function boxColor(i) {
    const hue = Math.round((i * 137.508) % 360);
    return { fill: `hsl(${hue}, 85%, 45%)`, text: hue >= 45 && hue <= 200 ? "#000" : "#fff" };
  }

  function drawRegions(ctx, regions, scale) {
    const n = Math.max(1, Math.min(Number(topN.value) || 10, regions.length));
    const chosen = regions
      .map((region, i) => ({ region, i }))
      .sort((a, b) => b.region.object_score - a.region.object_score)
      .slice(0, n);
    const r = scale.ratio;
    const fontSize = 12 * r;
    const pad = 3 * r;
    ctx.lineWidth = 2 * r;
    ctx.font = `${fontSize}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    const boxes = chosen.map(({ region }, rank) => {
      const [x1, y1, x2, y2] = region.box;
      return { region, color: boxColor(rank), x: x1 * scale.x, y: y1 * scale.y, w: (x2 - x1) * scale.x, h: (y2 - y1) * scale.y };
    });
    for (const box of boxes) {
      ctx.strokeStyle = box.color.fill;
      ctx.strokeRect(box.x, box.y, box.w, box.h);
    }
    // Labels after all boxes, lowest score first, so the best regions' labels end up on top. A label
    // sits above its box, or inside the box's top when there is no room above; never off the canvas.
    for (const box of boxes.slice().reverse()) {
      const text = regionLabel(box.region);
      const width = ctx.measureText(text).width + 2 * pad;
      const height = fontSize + 2 * pad;
      const x = Math.max(0, Math.min(box.x, ctx.canvas.width - width));
      const above = box.y - height;
      const y = Math.max(0, Math.min(above >= 0 ? above : box.y, ctx.canvas.height - height));
      ctx.fillStyle = box.color.fill;
      ctx.fillRect(x, y, width, height);
      ctx.fillStyle = box.color.text;
      ctx.fillText(text, x + pad, y + pad);
    }
    const listed = boxes.slice(0, 5).map((box) => regionLabel(box.region));
    $("canvas-caption").textContent = boxes.length
      ? `The ${boxes.length} highest-scoring of ${regions.length} regions, best first: ${listed.join(", ")}` +
        (boxes.length > 5 ? ", …" : ".")
      : "The detector found no regions.";
    return boxes.length;
  }

  function heatColor(t) {
    const position = t * (HEAT_STOPS.length - 1);
    const i = Math.min(HEAT_STOPS.length - 2, Math.floor(position));
    const f = position - i;
    return HEAT_STOPS[i].map((c, k) => Math.round(c + (HEAT_STOPS[i + 1][k] - c) * f));
  }

  // Each region adds its attention weight over its box; the sum is normalized by its maximum and
  // blended over the photo with an opacity proportional to the heat.
  function drawAttention(ctx, data, scale) {
    const index = Number(attentionQuestion.value) || 0;
    const result = data.results[index];
    const attention = result.attention;
    const word = attentionWord.value;
    const weights = word === "" ? attention.question : attention.weights[Number(word)];
    const cols = Math.ceil(ctx.canvas.width / HEAT_CELL);
    const rows = Math.ceil(ctx.canvas.height / HEAT_CELL);
    const heat = new Float32Array(cols * rows);
    const cellX = scale.x / HEAT_CELL;
    const cellY = scale.y / HEAT_CELL;
    let used = 0;
    data.regions.forEach((region, j) => {
      const weight = weights[j] || 0;
      if (weight <= 0) return;
      used += 1;
      const [x1, y1, x2, y2] = region.box;
      const c1 = Math.max(0, Math.floor(x1 * cellX));
      const c2 = Math.min(cols, Math.ceil(x2 * cellX));
      const r1 = Math.max(0, Math.floor(y1 * cellY));
      const r2 = Math.min(rows, Math.ceil(y2 * cellY));
      for (let row = r1; row < r2; row++) {
        for (let col = c1; col < c2; col++) heat[row * cols + col] += weight;
      }
    });
    const max = heat.reduce((a, b) => Math.max(a, b), 0);
    if (max > 0) {
      const overlay = new ImageData(cols, rows);
      for (let k = 0; k < heat.length; k++) {
        const t = heat[k] / max;
        const [red, green, blue] = heatColor(t);
        overlay.data.set([red, green, blue, Math.round(255 * HEAT_ALPHA * t)], 4 * k);
      }
      const small = document.createElement("canvas");
      small.width = cols;
      small.height = rows;
      small.getContext("2d").putImageData(overlay, 0, 0);
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(small, 0, 0, ctx.canvas.width, ctx.canvas.height);
    }
    const ranked = data.regions
      .map((region, j) => ({ region, weight: weights[j] || 0 }))
      .sort((a, b) => b.weight - a.weight)
      .slice(0, 3)
      .map(({ region, weight }) => `${regionLabel(region).replace(/ [\d.]+$/, "")} (${weight.toFixed(3)})`);
    const what = word === "" ? "the question" : `the word “${attention.words[Number(word)]}”`;
    $("canvas-caption").textContent =
      `Attention of ${what} in “${result.question}” (layer ${attention.layer}), red where it is highest. ` +
      `Most attended regions: ${ranked.join(", ")}.`;
    return used;
  }

  loadInfo();
})();
