// The labelling page (GET /label): one ticket of the label queue at a time, the model's
// suggestion and the words that pushed it, categories as buttons with keyboard shortcuts.
// The label key lives in this tab's sessionStorage only: never in the page, a URL or a cookie.
"use strict";

const KEY = "tickets.labelKey";
const DONE = "tickets.labelsDone";
const BATCH = 50;

const $ = (id) => document.getElementById(id);
const state = {
  queue: [], // entries of /labeling/queue not shown yet
  passed: new Set(), // request ids labelled or skipped in this tab: not shown again
  history: [], // labels this tab sent, newest last: what undo takes back
  labels: [],
  current: null,
  suggestion: null,
  busy: false,
};

function say(text) {
  $("status").textContent = text;
}

function complain(text) {
  $("problem").textContent = text;
}

function show(id) {
  for (const section of ["login", "work", "empty"]) $(section).hidden = section !== id;
  $("counter").hidden = id === "login";
}

function doneCount() {
  return Number(sessionStorage.getItem(DONE) || "0");
}

function setDone(n) {
  sessionStorage.setItem(DONE, String(n));
  $("done").textContent = String(n);
}

async function call(method, path, body, key) {
  const headers = { "X-API-Key": key || sessionStorage.getItem(KEY) || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = null;
  }
  return { status: response.status, data };
}

function detail(answer) {
  return (answer.data && (answer.data.detail || answer.data.error)) || `HTTP ${answer.status}`;
}

function askForKey(message) {
  sessionStorage.removeItem(KEY);
  show("login");
  complain(message || "");
  $("key").value = "";
  $("key").focus();
}

async function login(event) {
  event.preventDefault();
  const key = $("key").value.trim();
  if (!key) return;
  say("Comprobando la clave…");
  complain("");
  const answer = await call("GET", `/labeling/queue?n=${BATCH}`, undefined, key);
  say("");
  if (answer.status === 401) {
    askForKey("Clave incorrecta: el servicio no la reconoce. No se ha guardado nada.");
    return;
  }
  if (answer.status === 403) {
    askForKey(`El etiquetado está desactivado en este servicio: ${detail(answer)}`);
    return;
  }
  sessionStorage.setItem(KEY, key);
  $("key").value = "";
  accept(answer);
}

function accept(answer) {
  if (answer.status === 401) {
    askForKey("La clave ya no es válida; vuelve a escribirla.");
    return;
  }
  if (answer.status !== 200) {
    complain(`No se pudo leer la cola (${detail(answer)}). Se reintentará en unos segundos.`);
    setTimeout(refill, 5000);
    return;
  }
  complain("");
  state.labels = answer.data.labels || [];
  drawLabels();
  state.queue = answer.data.tickets.filter((entry) => !state.passed.has(entry.request_id));
  next();
}

async function refill() {
  say("Buscando tickets…");
  accept(await call("GET", `/labeling/queue?n=${BATCH}`));
  say("");
}

function drawLabels() {
  const box = $("labels");
  box.replaceChildren();
  state.labels.forEach((label, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = label;
    if (index < 9) {
      const key = document.createElement("kbd");
      key.textContent = String(index + 1);
      key.setAttribute("aria-hidden", "true");
      button.append(key);
      button.setAttribute("aria-keyshortcuts", String(index + 1));
    }
    button.append(label);
    button.addEventListener("click", () => label_(label));
    box.append(button);
  });
}

function next() {
  const entry = state.queue.shift();
  if (!entry) {
    state.current = null;
    if (state.passed.size) {
      // The queue ranks at most BATCH tickets at a time; ask again for the ones after them.
      refillOnce();
    } else {
      show("empty");
    }
    return;
  }
  state.current = entry;
  show("work");
  $("ticket").dataset.requestId = entry.request_id;
  $("position").textContent = entry.request_id.slice(0, 8);
  $("created").textContent = new Date(entry.created_at).toLocaleString("es-ES");
  $("reason").textContent = why(entry);
  highlight($("short"), entry.short_description, []);
  highlight($("notes"), entry.close_notes, []);
  $("notes-block").hidden = !entry.close_notes;
  suggest(entry.prediction, entry.confidence, null);
  $("ticket").focus();
  explainCurrent(entry);
}

const percent = (share) => `${Math.round(share * 100)} %`;

function why(entry) {
  // Why the queue chose it, in the desk's language (the API's ``reason`` is for engineers).
  const parts = [];
  if (entry.runner_up) {
    parts.push(`duda entre «${entry.prediction}» y «${entry.runner_up}» (margen ${entry.margin.toFixed(2)})`);
  }
  if (entry.novelty > 0) parts.push(`${percent(entry.novelty)} de sus palabras son nuevas para el modelo`);
  return parts.length ? `Elegido por ${parts.join("; ")}` : "Elegido por dudoso";
}

let refilling = false;
async function refillOnce() {
  if (refilling) return;
  refilling = true;
  const answer = await call("GET", `/labeling/queue?n=${BATCH}`);
  refilling = false;
  if (answer.status === 200) {
    const fresh = answer.data.tickets.filter((entry) => !state.passed.has(entry.request_id));
    if (!fresh.length) {
      show("empty");
      $("reload").focus();
      return;
    }
  }
  accept(answer);
}

function suggest(label, confidence, words) {
  state.suggestion = label;
  $("suggested").textContent = label;
  $("confidence").textContent = percent(confidence);
  for (const button of $("labels").querySelectorAll("button")) {
    const chosen = button.dataset.label === label;
    button.classList.toggle("suggested", chosen);
    if (chosen) button.setAttribute("aria-description", "sugerencia del modelo");
    else button.removeAttribute("aria-description");
  }
  const list = $("why");
  list.replaceChildren();
  $("why-title").textContent = words === null ? "Buscando las palabras que la empujaron…" : "Palabras que la empujaron:";
  for (const word of words || []) {
    const item = document.createElement("li");
    item.textContent = `${word.word} (+${word.weight.toFixed(2)})`;
    list.append(item);
  }
  if (words !== null && !(words || []).length) $("why-title").textContent = "Ninguna palabra destaca.";
}

async function explainCurrent(entry) {
  const body = { short_description: entry.short_description };
  if (entry.close_notes) body.close_notes = entry.close_notes;
  const answer = await call("POST", "/explain?top_k=8", body);
  if (state.current !== entry) return; // the agent moved on
  if (answer.status !== 200) {
    $("why-title").textContent = "Sin explicación ahora mismo.";
    return;
  }
  const top = answer.data.classes.find((c) => c.label === answer.data.prediction);
  const pushing = top ? top.top_terms.filter((w) => w.weight > 0) : [];
  suggest(answer.data.prediction, answer.data.probability, pushing.slice(0, 6));
  highlight($("short"), entry.short_description, pushing.filter((w) => w.field === "short_description"));
  highlight($("notes"), entry.close_notes, pushing.filter((w) => w.field === "close_notes"));
}

function highlight(element, text, words) {
  // Text nodes and <mark> elements only: ticket text is never parsed as HTML.
  element.replaceChildren();
  const spans = words
    .filter((w) => Number.isInteger(w.start) && w.end > w.start && w.end <= text.length)
    .sort((a, b) => a.start - b.start);
  let at = 0;
  for (const span of spans) {
    if (span.start < at) continue;
    element.append(text.slice(at, span.start));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(span.start, span.end);
    element.append(mark);
    at = span.end;
  }
  element.append(text.slice(at));
}

async function label_(label) {
  const entry = state.current;
  if (!entry || state.busy) return;
  state.busy = true;
  complain("");
  const answer = await call("POST", "/feedback", { request_id: entry.request_id, true_label: label });
  state.busy = false;
  if (answer.status === 401) return askForKey("La clave ya no es válida; vuelve a escribirla.");
  if (answer.status === 200) {
    state.passed.add(entry.request_id);
    state.history.push({ entry, label });
    $("undo").disabled = false;
    setDone(doneCount() + 1);
    say(`Guardado: «${label}».`);
    next();
    return;
  }
  if (answer.status === 404) {
    state.passed.add(entry.request_id);
    complain("Ese ticket ya no está en el registro (se borró por antigüedad); pasamos al siguiente.");
    next();
    return;
  }
  complain(`No se guardó la etiqueta: ${detail(answer)}`);
}

function skip() {
  if (!state.current || state.busy) return;
  state.passed.add(state.current.request_id);
  say("Ticket saltado.");
  next();
}

async function undo() {
  const last = state.history[state.history.length - 1];
  if (!last || state.busy) return;
  state.busy = true;
  const id = encodeURIComponent(last.entry.request_id);
  const expected = encodeURIComponent(last.label);
  const answer = await call("DELETE", `/feedback/${id}?true_label=${expected}`);
  state.busy = false;
  if (answer.status === 401) return askForKey("La clave ya no es válida; vuelve a escribirla.");
  if (answer.status !== 200 && answer.status !== 404 && answer.status !== 409) {
    complain(`No se pudo deshacer: ${detail(answer)}`);
    return;
  }
  state.history.pop();
  $("undo").disabled = state.history.length === 0;
  if (answer.status === 409) {
    complain("Otra persona cambió esa etiqueta después; se mantiene la suya.");
    return;
  }
  setDone(Math.max(0, doneCount() - 1));
  state.passed.delete(last.entry.request_id);
  if (state.current) state.queue.unshift(state.current);
  state.queue.unshift(last.entry);
  say(`Deshecho: «${last.label}». El ticket vuelve a estar pendiente.`);
  next();
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if ($("work").hidden || event.target instanceof HTMLInputElement) return;
  const key = event.key;
  if (/^[1-9]$/.test(key)) {
    const label = state.labels[Number(key) - 1];
    if (label !== undefined) {
      event.preventDefault();
      label_(label);
    }
  } else if (key === "Enter") {
    if (event.target instanceof HTMLButtonElement) return; // the focused button acts itself
    event.preventDefault();
    if (state.suggestion) label_(state.suggestion);
  } else if (key === "s" || key === "S") {
    event.preventDefault();
    skip();
  } else if (key === "z" || key === "Z") {
    event.preventDefault();
    undo();
  }
}

function logout() {
  sessionStorage.removeItem(KEY);
  state.queue = [];
  state.current = null;
  askForKey("");
  say("Has salido. La clave se ha borrado de esta pestaña.");
}

function start() {
  $("login").addEventListener("submit", login);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("logout").addEventListener("click", logout);
  $("reload").addEventListener("click", refill);
  document.addEventListener("keydown", onKey);
  $("done").textContent = String(doneCount());
  if (sessionStorage.getItem(KEY)) refill();
  else askForKey("");
}

start();
