// The docs page of `tfdeploy serve`: reads /openapi.json and offers, for every predict route
// (the R package's /<signature>/predict and TF Serving's /v1/models/<name>:predict), the
// signature's inputs and outputs, how that route answers, an example request keyed by input
// name that can be edited and sent, and the answer.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

// JSON indented for reading, with arrays of plain values kept on one line.
function pretty(value) {
  return JSON.stringify(value, null, 2).replace(
    /\[\s+([^\[\]{}]*?)\s+\]/g, (_, inner) => "[" + inner.replace(/\s+/g, " ") + "]");
}

function tensorTable(title, tensors) {
  const table = el("table", { class: title },
    el("tr", {}, el("th", {}, title), el("th", {}, "dtype"), el("th", {}, "shape")));
  for (const t of tensors) {
    const shape = t.shape === null ? "unknown" : "[" + t.shape.join(", ") + "]";
    table.append(el("tr", {}, el("td", {}, el("code", {}, t.name)), el("td", {}, t.dtype), el("td", {}, shape)));
  }
  return table;
}

async function send(path, textarea, output, status) {
  status.textContent = "sending…";
  status.className = "status";
  try {
    // Relative to the page, so the page works under a path prefix (a Posit Connect content URL).
    const response = await fetch(path.replace(/^\//, ""), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: textarea.value,
    });
    const text = await response.text();
    let shown = text;
    try { shown = pretty(JSON.parse(text)); } catch (e) { /* not JSON: show as is */ }
    output.textContent = shown;
    status.textContent = "HTTP " + response.status;
    status.className = response.ok ? "status status-ok" : "status status-error";
  } catch (err) {
    status.textContent = "request failed: " + err;
    status.className = "status status-error";
  }
}

function routeSection(path, operation) {
  const sig = operation["x-signature"];
  const example = operation.requestBody.content["application/json"].example;
  const answer = operation.responses["200"];
  const answerExample = answer.content["application/json"].example;
  const format = operation["x-answer-format"] === "r"
    ? "R package format: every output keyed by its name"
    : "TF Serving format: a bare value for one output, keyed by name for several";
  const textarea = el("textarea", { class: "request", spellcheck: "false" });
  textarea.value = pretty(example);
  const output = el("pre", { class: "response" });
  const status = el("span", { class: "status" });
  const button = el("button", { class: "send", type: "button" }, "Send");
  button.addEventListener("click", () => send(path, textarea, output, status));
  const b64 = sig.inputs.some((t) => t.dtype === "DT_STRING")
    ? el("p", {}, "Binary string values may be sent as ", el("code", {}, '{"b64": "..."}'), ".")
    : "";
  return el("section", {
      class: "route", "data-signature": sig.name, "data-path": path,
      "data-format": operation["x-answer-format"],
    },
    el("h2", {}, "POST ", el("code", {}, path)),
    el("p", {}, "Signature ", el("code", {}, sig.name), " (" + (sig.method_name || "predict") + ")"),
    tensorTable("inputs", sig.inputs), tensorTable("outputs", sig.outputs), b64,
    el("p", { class: "answer-format" }, "Answers in the " + format + ", e.g. ",
      el("code", { class: "answer-example" }, JSON.stringify(answerExample))),
    textarea, button, " ", status, output);
}

async function main() {
  const container = document.getElementById("signatures");
  const description = document.getElementById("description");
  let spec;
  try {
    const response = await fetch("openapi.json");
    spec = await response.json();
  } catch (err) {
    description.textContent = "Could not load openapi.json: " + err;
    return;
  }
  document.getElementById("title").textContent = spec.info.title;
  document.title = spec.info.title + " · tfdeploy serve";
  description.textContent = spec.info.description +
    " The R package's routes come first, then TF Serving's; TF Serving clients can also use" +
    " /v1/models/… for status, metadata, classify and regress.";
  const routes = Object.entries(spec.paths)
    .filter(([, item]) => item.post && item.post["x-signature"])
    .sort(([a], [b]) => Number(a.startsWith("/v1/")) - Number(b.startsWith("/v1/")));
  for (const [path, item] of routes) {
    container.append(routeSection(path, item.post));
  }
  document.body.setAttribute("data-ready", "true");
}

main();
