// Showing untrusted strings. Everything an agent, a chat or the API hands the console
// becomes a text node, never markup; the only attributes set are the console's own.
// Bidirectional overrides and control characters are shown as visible markers, so a
// string cannot reorder the text around it or hide what it says.

const INVISIBLE =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2069\uFEFF]/g;

export function visible(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return text.replace(INVISIBLE, (c) =>
    `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

// el("td", {class: "x"}, "text", otherNode): an element whose children are nodes or
// strings made into text. Attribute names are the caller's constants; "on*" is refused
// so no handler can ever be set from here.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (/^on/i.test(name) || name === "href" || name === "src" || name === "style") {
      throw new Error(`the console never sets ${name}`);
    }
    node.setAttribute(name, value === true ? "" : visible(value));
  }
  append(node, ...children);
  return node;
}

export function append(node, ...children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(visible(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

// Timestamps from the API are microseconds since the epoch.
export function clockTime(micros) {
  if (typeof micros !== "number") return "";
  return new Date(micros / 1000).toLocaleTimeString([], { hour12: false });
}

export function dateTime(micros) {
  if (typeof micros !== "number") return "";
  return new Date(micros / 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function age(micros, nowMs = Date.now()) {
  if (typeof micros !== "number") return "never";
  const seconds = Math.max(0, Math.round((nowMs - micros / 1000) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}
