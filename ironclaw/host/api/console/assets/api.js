// The API, called with the token the user pasted. The token lives in sessionStorage
// only (gone when the tab closes) and travels in the Authorization header, never in a
// URL. Every failure becomes an ApiError whose message is a sentence for the user.

const TOKEN_KEY = "ironclaw.console.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, sentence) {
    super(sentence);
    this.status = status;
  }
}

const LEADS = {
  400: "The control plane could not accept that request.",
  401: "The token was not accepted. Sign in again with a valid token.",
  403: "Your role does not allow this.",
  404: "That no longer exists.",
  409: "That was already decided, or changed meanwhile.",
  413: "That request is too large.",
  422: "The control plane refused that change.",
  429: "Too many requests. Wait a moment, then try again.",
  503: "The control plane is not ready yet.",
};

function sentence(status, body) {
  const lead = LEADS[status] || `The control plane answered with an error (HTTP ${status}).`;
  const detail = body && typeof body.detail === "string" ? body.detail.trim() : "";
  if (!detail) return lead;
  return `${lead} It said: “${detail.replace(/[.]$/, "")}”.`;
}

export async function call(method, path, body, tokenValue = token.get()) {
  if (!tokenValue) throw new ApiError(401, "You are signed out.");
  const headers = { Authorization: `Bearer ${tokenValue}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      mode: "same-origin", credentials: "omit", cache: "no-store", redirect: "error",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new ApiError(0, "The control plane could not be reached. Check that it is " +
      "running, then try again.");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, sentence(response.status, data));
  if (data === null) throw new ApiError(response.status, "The control plane sent an answer " +
    "the console could not read.");
  return data;
}

export const get = (path, tokenValue) => call("GET", path, undefined, tokenValue);
export const post = (path, body) => call("POST", path, body);

export async function reachable() {
  try {
    const response = await fetch("/healthz", { cache: "no-store", credentials: "omit" });
    return response.ok;
  } catch {
    return false;
  }
}
