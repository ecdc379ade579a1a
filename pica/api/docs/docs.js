// Renders /openapi.json (OpenAPI 3.1, as pica/api/openapi.py writes it) as a reference page: operations by tag, then
// the schemas. Plain DOM calls and textContent only (nothing from the document is parsed as HTML), no network access
// beyond this origin, no build step.

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const refName = (ref) => ref.split("/").pop();
let schemas = {};  // the document's components.schemas, once loaded

// A schema as a short type expression: a link for a named schema, "array of X", "A | B", constraints in words.
function typeOf(schema) {
  if (!schema || Object.keys(schema).length === 0) return el("span", { class: "type", text: "any" });
  if (schema.$ref) {
    return el("a", { class: "type", href: `#schema-${refName(schema.$ref)}`, text: refName(schema.$ref) });
  }
  const parts = schema.anyOf || schema.oneOf;
  if (parts) {
    const span = el("span");
    parts.forEach((part, i) => span.append(...(i ? [" | ", typeOf(part)] : [typeOf(part)])));
    return span;
  }
  if (schema.type === "array") {
    if (schema.prefixItems) {
      const span = el("span", {}, "[");
      schema.prefixItems.forEach((item, i) => span.append(...(i ? [", ", typeOf(item)] : [typeOf(item)])));
      span.append("]");
      return span;
    }
    const span = el("span", {}, "array of ", typeOf(schema.items));
    const bounds = [];
    if (schema.minItems !== undefined) bounds.push(`at least ${schema.minItems}`);
    if (schema.maxItems !== undefined) bounds.push(`at most ${schema.maxItems}`);
    if (bounds.length) span.append(` (${bounds.join(", ")})`);
    return span;
  }
  let text = schema.type === undefined ? "any" : String(schema.type);
  if (schema.type === "object" && schema.additionalProperties) text = "object (map)";
  if (schema.enum) text = schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  const bounds = [];
  if (schema.minimum !== undefined) bounds.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) bounds.push(`≤ ${schema.maximum}`);
  if (schema.minLength !== undefined) bounds.push(`length ≥ ${schema.minLength}`);
  if (schema.maxLength !== undefined) bounds.push(`length ≤ ${schema.maxLength}`);
  if (bounds.length) text += ` (${bounds.join(", ")})`;
  return el("span", { class: "type", text });
}

function describe(schema) {
  const notes = [];
  if (schema.description) notes.push(schema.description);
  if (schema.default !== undefined) notes.push(`Default: ${JSON.stringify(schema.default)}.`);
  return notes.join(" ");
}

// The fields of an object schema, one row each.
function fieldsTable(schema) {
  const required = new Set(schema.required || []);
  const table = el("table", {}, el("tr", {}, el("th", { text: "Field" }), el("th", { text: "Type" }),
                                    el("th", { text: "Meaning" })));
  for (const [name, field] of Object.entries(schema.properties || {})) {
    const nameCell = el("td", {}, el("code", { text: name }));
    if (required.has(name)) nameCell.append(" ", el("span", { class: "required", text: "required" }));
    table.append(el("tr", {}, nameCell, el("td", {}, typeOf(field)), el("td", { text: describe(field) })));
  }
  return table;
}

function parametersTable(parameters) {
  const table = el("table", {}, el("tr", {}, el("th", { text: "Parameter" }), el("th", { text: "In" }),
                                    el("th", { text: "Type" }), el("th", { text: "Meaning" })));
  for (const p of parameters) {
    const nameCell = el("td", {}, el("code", { text: p.name }));
    if (p.required) nameCell.append(" ", el("span", { class: "required", text: "required" }));
    let meaning = p.description || describe(p.schema || {});
    if (p.style === "form" && p.explode === false) meaning = `${meaning} Comma-separated.`.trim();
    table.append(el("tr", {}, nameCell, el("td", { text: p.in }), el("td", {}, typeOf(p.schema)),
                    el("td", { text: meaning })));
  }
  return table;
}

function bodyOf(content) {
  const [[mediaType, { schema }]] = Object.entries(content);
  return el("span", {}, typeOf(schema), ` (${mediaType})`);
}

function operationCard(path, method, op) {
  const auth = op["x-pica-auth"] || "none";
  const label = { none: "no token", user: "bearer token", admin: "administrator" }[auth] || auth;
  const card = el("article", { class: "op", id: `op-${op.operationId}`, "data-search": `${method} ${path} ${op.summary}`.toLowerCase() },
    el("h3", {}, el("span", { class: `method ${method}`, text: method.toUpperCase() }),
       el("span", { class: "path", text: path }), el("span", { class: `auth ${auth}`, text: label })),
    el("p", { class: "summary", text: op.summary || "" }));
  if (op.description) card.append(el("p", { class: "description", text: op.description }));
  if (op.parameters) card.append(el("h4", { text: "Parameters" }), parametersTable(op.parameters));
  if (op.requestBody) {
    card.append(el("h4", { text: "Request body" }), el("p", {}, bodyOf(op.requestBody.content)));
    // The fields of the body, where a client writes it: one look instead of a jump to the schema.
    const { schema } = Object.values(op.requestBody.content)[0];
    const body = schema.$ref ? schemas[refName(schema.$ref)] : schema;
    if (body && body.properties) card.append(fieldsTable(body));
  }
  card.append(el("h4", { text: "Responses" }));
  const table = el("table");
  for (const [status, answer] of Object.entries(op.responses)) {
    table.append(el("tr", {}, el("td", { class: "status", text: status }), el("td", { text: answer.description }),
                    el("td", {}, answer.content ? bodyOf(answer.content) : "")));
  }
  card.append(table);
  return card;
}

function render(doc) {
  $("title").textContent = doc.info.title;
  $("version").textContent = `Version ${doc.info.version} · OpenAPI ${doc.openapi}`;
  $("description").textContent = doc.info.description || "";
  document.title = doc.info.title;
  schemas = doc.components.schemas;
  const byTag = new Map();
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, method, op]);
    }
  }
  const main = $("main");
  const nav = $("nav");
  main.replaceChildren();
  nav.replaceChildren();
  for (const [tag, ops] of byTag) {
    const section = el("section", { class: "tag", id: `tag-${tag}` }, el("h2", { text: tag }));
    nav.append(el("h2", { text: tag }));
    for (const [path, method, op] of ops) {
      section.append(operationCard(path, method, op));
      nav.append(el("a", { href: `#op-${op.operationId}`, "data-search": `${method} ${path} ${op.summary}`.toLowerCase(),
                           text: `${method.toUpperCase()} ${path}` }));
    }
    main.append(section);
  }
  const listing = el("section", { class: "tag", id: "schemas" }, el("h2", { text: "Schemas" }));
  nav.append(el("h2", {}, el("a", { href: "#schemas", text: "Schemas" })));
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    const card = el("article", { class: "op", id: `schema-${name}` }, el("h3", {}, el("span", { class: "path", text: name })));
    if (schema.description) card.append(el("p", { class: "description", text: schema.description }));
    card.append(schema.properties ? fieldsTable(schema) : el("p", {}, typeOf(schema)));
    listing.append(card);
  }
  main.append(listing);
}

function filter(text) {
  const wanted = text.trim().toLowerCase();
  for (const node of document.querySelectorAll("[data-search]")) {
    node.classList.toggle("hidden", wanted !== "" && !node.dataset.search.includes(wanted));
  }
}

async function main() {
  try {
    const response = await fetch("/openapi.json");
    if (!response.ok) throw new Error(`/openapi.json answered ${response.status}`);
    render(await response.json());
    $("filter").addEventListener("input", (event) => filter(event.target.value));
    if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  } catch (error) {
    $("main").replaceChildren(el("p", { id: "status", text: `Could not load the document: ${error.message}` }));
  }
}

main();
