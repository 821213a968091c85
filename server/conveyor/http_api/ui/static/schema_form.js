// A form from a tool's input JSON Schema: a field per property (text, number, a checkbox, a
// choice), and raw JSON for what a field cannot hold (objects, arrays, unions). read() gives
// the arguments, leaving out what was left empty, so the tool's defaults apply.
import { h } from "./common.js";

const SIMPLE = new Set(["string", "number", "integer", "boolean"]);

// The one non-null shape of a property (an optional field is "X or null"), or null.
function shapeOf(schema) {
  if (!schema || typeof schema !== "object") return null;
  const options = schema.anyOf || schema.oneOf;
  if (Array.isArray(options)) {
    const real = options.filter((option) => !(option && option.type === "null"));
    return real.length === 1 ? { ...shapeOf(real[0]), description: schema.description ?? real[0].description, default: schema.default } : null;
  }
  let type = schema.type;
  if (Array.isArray(type)) {
    const real = type.filter((t) => t !== "null");
    type = real.length === 1 ? real[0] : null;
  }
  const choices = Array.isArray(schema.enum) ? schema.enum : "const" in schema ? [schema.const] : null;
  if (choices && choices.every((c) => c === null || ["string", "number", "boolean"].includes(typeof c))) {
    return { ...schema, kind: "choice", choices: choices.filter((c) => c !== null) };
  }
  if (SIMPLE.has(type)) return { ...schema, kind: type };
  return null;
}

function describe(name, schema, required) {
  const hints = [];
  if (schema.minimum !== undefined) hints.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) hints.push(`≤ ${schema.maximum}`);
  if (schema.default !== undefined) hints.push(`default ${JSON.stringify(schema.default)}`);
  return h(
    "span",
    { class: "field-label" },
    h("span", { class: "mono" }, name),
    required ? h("span", { class: "required", title: "required" }, " *") : null,
    schema.description ? h("span", { class: "hint" }, ` ${schema.description}`) : null,
    hints.length ? h("span", { class: "hint muted" }, ` (${hints.join(", ")})`) : null,
  );
}

function input(name, shape, required, id) {
  const common = { id, name, "data-argument": name };
  switch (shape.kind) {
    case "choice": {
      const select = h("select", common, required ? null : h("option", { value: "" }, "—"));
      shape.choices.forEach((choice, i) => select.append(h("option", { value: String(i) }, String(choice))));
      if (shape.default !== undefined) select.value = String(shape.choices.indexOf(shape.default));
      return select;
    }
    case "boolean": {
      if (required) return h("input", { ...common, type: "checkbox", checked: shape.default === true });
      const select = h("select", common, h("option", { value: "" }, "—"), h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
      return select;
    }
    case "number":
    case "integer":
      return h("input", {
        ...common, type: "number", step: shape.kind === "integer" ? "1" : "any", min: shape.minimum, max: shape.maximum,
        placeholder: shape.default !== undefined ? String(shape.default) : null, inputmode: shape.kind === "integer" ? "numeric" : "decimal",
      });
    default: {
      const long = (shape.maxLength ?? 0) > 200 || shape.format === "textarea";
      const attrs = { ...common, placeholder: typeof shape.default === "string" ? shape.default : null, spellcheck: "false" };
      return long ? h("textarea", { ...attrs, rows: "4" }) : h("input", { ...attrs, type: shape.format === "password" || shape.writeOnly ? "password" : "text" });
    }
  }
}

function read(field) {
  const { el, shape, name } = field;
  if (shape === null) {
    const text = el.value.trim();
    if (!text) return { empty: true };
    try {
      return { value: JSON.parse(text) };
    } catch {
      return { problem: { code: "INVALID_ARGUMENTS", message: `${name} is not valid JSON`, argument: name } };
    }
  }
  if (shape.kind === "boolean") {
    if (el.type === "checkbox") return { value: el.checked };
    return el.value === "" ? { empty: true } : { value: el.value === "true" };
  }
  if (shape.kind === "choice") return el.value === "" ? { empty: true } : { value: shape.choices[Number(el.value)] };
  if (el.value === "") return { empty: true };
  if (shape.kind === "number" || shape.kind === "integer") {
    const number = Number(el.value);
    if (!Number.isFinite(number)) return { problem: { code: "INVALID_ARGUMENTS", message: `${name} must be a number`, argument: name } };
    return { value: number };
  }
  return { value: el.value };
}

export function buildForm(container, schema) {
  const fields = [];
  const properties = schema && schema.type === "object" && schema.properties ? schema.properties : null;
  const required = new Set((schema && schema.required) || []);
  if (properties === null || (Object.keys(properties).length === 0 && schema.additionalProperties !== false)) {
    // No properties to make fields of: the arguments as one JSON object.
    const el = h("textarea", { id: "arg-json", name: "arguments", rows: "6", spellcheck: "false", placeholder: "{}", "data-argument": "arguments" });
    container.replaceChildren(h("label", { class: "field", for: "arg-json" }, describe("arguments", { description: "JSON object" }, false), el));
    return {
      read() {
        const text = el.value.trim() || "{}";
        try {
          return { arguments: JSON.parse(text) };
        } catch {
          return { problem: { code: "INVALID_ARGUMENTS", message: "arguments is not valid JSON", argument: "arguments" } };
        }
      },
      field: () => el,
    };
  }
  container.replaceChildren();
  if (Object.keys(properties).length === 0) container.append(h("p", { class: "muted" }, "This tool takes no arguments."));
  for (const [name, property] of Object.entries(properties)) {
    const shape = shapeOf(property);
    const id = `arg-${name}`;
    const el = shape
      ? input(name, shape, required.has(name), id)
      : h("textarea", { id, name, rows: "4", spellcheck: "false", "data-argument": name, placeholder: property && property.default !== undefined ? JSON.stringify(property.default) : "JSON" });
    fields.push({ name, shape, el });
    const label = describe(name, shape || property || {}, required.has(name));
    const row = el.type === "checkbox"
      ? h("label", { class: "field checkbox", for: id }, el, label)
      : h("label", { class: "field", for: id }, label, el);
    container.append(row);
  }
  return {
    read() {
      const args = {};
      for (const field of fields) {
        const { value, empty, problem } = read(field);
        if (problem) return { problem };
        if (!empty) args[field.name] = value;
      }
      return { arguments: args };
    },
    field: (name) => fields.find((f) => f.name === name)?.el ?? null,
  };
}
