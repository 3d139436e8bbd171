// The approver UI: a thin client of the access API. Every decision is the server's; this page
// only shows what the API returns and posts the approver's answer. Text from requests is set
// with textContent only, never parsed as HTML.
"use strict";

const TOKEN_KEY = "jitgate.token";
let nextCursor = null;
let openId = null;
// How this tab is signed in: "session" (the server's cookie, after signing in with the
// organisation's identity provider) or "token" (a pasted token, development mode only).
let signedInBy = null;
let csrfToken = null;

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function signedIn() {
  return signedInBy !== null && !$("app").hidden;
}

function say(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
  $("reauth").hidden = true;
}

// The headers that authenticate this tab's requests: the pasted token, or for the session
// cookie (which the browser adds) the CSRF token on anything that changes state.
function authHeaders(method) {
  if (signedInBy === "token") return { Authorization: "Bearer " + token() };
  if (method !== "GET" && csrfToken) return { "X-CSRF-Token": csrfToken };
  return {};
}

async function api(method, path, body) {
  const headers = authHeaders(method);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) {
    forget();
    throw new Error("Your sign-in has ended; sign in again.");
  }
  if (!response.ok) {
    const detail = data.error ? data.error.message : response.statusText;
    const error = new Error(detail + (data.status ? " (status: " + data.status + ")" : ""));
    error.code = data.error ? data.error.code : null;
    throw error;
  }
  return data;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function age(created) {
  const seconds = Math.max(0, (Date.now() - Date.parse(created)) / 1000);
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function duration(seconds) {
  if (seconds < 120) return seconds + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function riskText(risk) {
  const names = (risk.signals || []).map((s) => s.name + " +" + s.score);
  return risk.score + (names.length ? " (" + names.join(", ") + ")" : "");
}

// "dba 1/1 approved, then security 0/2 open"; "-" for a request of one stage.
function stagesText(stages) {
  if (!stages || stages.length < 2) return "-";
  return stages.map((s) => s.name + " " + s.approvals + "/" + s.required + " " + s.status).join(", then ");
}

function approvalsCount(request) {
  const given = (request.approvals || []).filter((a) => a.decision === "approve").length;
  return given + " / " + request.approvals_required;
}

// Back to the sign-in panel, forgetting how this tab was signed in.
function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
  signedInBy = null;
  csrfToken = null;
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in-panel").hidden = false;
  $("who").textContent = "";
}

async function signOut() {
  if (signedInBy === "session") {
    const answer = await fetch("/auth/logout", {
      method: "POST", headers: authHeaders("POST"), credentials: "same-origin",
    }).catch(() => null);
    if (!answer || !answer.ok) {
      say("Signing out failed; you are still signed in. Try again.", true);
      return;
    }
  }
  forget();
  say("Signed out.");
}

async function signIn() {
  const value = $("token").value.trim();
  if (!value) {
    say("Paste a token first.", true);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  signedInBy = "token";
  await start();
}

// Where a sign-in comes back to: this page, at the request it shows.
function signInLink(maxAge) {
  const next = "/ui/" + location.hash;
  return "/auth/login?" + (maxAge === undefined ? "" : "max_age=" + maxAge + "&") +
    "next=" + encodeURIComponent(next);
}

async function start() {
  let me;
  try {
    me = await api("GET", "/v1/me");
    await refresh();
  } catch (e) {
    forget();
    say(e.message, true);
    return;
  }
  csrfToken = me.csrf_token || null;
  $("sign-in-panel").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = "signed in as " + me.principal;
  say("");
  await loadRequestable().catch((e) => say(e.message, true));
  follow();
  const fromLink = /^#request=(.+)$/.exec(location.hash);
  if (fromLink) await openRequest(decodeURIComponent(fromLink[1]));
}

// Offers the ways to sign in this server has, and resumes a sign-in this browser has.
async function offerSignIn() {
  const methods = await fetch("/auth/methods", { cache: "no-store" })
    .then((r) => r.json())
    .catch(() => ({ sign_in: false, paste_token: false }));
  $("sso").href = signInLink();
  $("sso-panel").hidden = !methods.sign_in;
  $("paste-panel").hidden = !methods.paste_token;
  $("no-sign-in").hidden = methods.sign_in || methods.paste_token;
  if (methods.paste_token && token()) {
    signedInBy = "token";
    return start();
  }
  if (methods.sign_in) {
    const me = await fetch("/v1/me", { cache: "no-store", credentials: "same-origin" });
    if (me.ok) {
      signedInBy = "session";
      return start();
    }
  }
}

async function loadPending(fresh) {
  const body = $("pending").tBodies[0];
  if (fresh) nextCursor = null;
  let path = "/v1/access-requests?status=pending&limit=50";
  if (!fresh && nextCursor) path += "&cursor=" + encodeURIComponent(nextCursor);
  const page = await api("GET", path);
  if (fresh) body.replaceChildren();
  for (const request of page.requests) {
    const row = element("tr");
    row.dataset.requestId = request.request_id;
    row.append(
      element("td", request.requester),
      element("td", request.action),
      element("td", request.resource),
      element("td", request.reason, "reason"),
      element("td", (request.granted_scopes || []).join(" ") + " for " + duration(request.lifetime_secs)),
      element("td", riskText(request.risk), request.risk.score >= 50 ? "risk-high" : ""),
      element("td", approvalsCount(request)),
      element("td", age(request.created_at)),
    );
    const open = element("button", "Open", "small open");
    open.addEventListener("click", () => openRequest(request.request_id));
    const cell = element("td");
    cell.append(open);
    row.append(cell);
    body.append(row);
  }
  nextCursor = page.next;
  $("more").hidden = !nextCursor;
  $("pending-empty").hidden = body.rows.length > 0;
}

// Break-glass requests awaiting review: the server lists them to administrators only, so
// the section shows only when there is something for this caller to review.
async function loadReview() {
  const page = await api("GET", "/v1/access-requests?status=needs_review&limit=50");
  const body = $("awaiting-review").tBodies[0];
  body.replaceChildren();
  for (const request of page.requests) {
    const row = element("tr");
    row.dataset.requestId = request.request_id;
    row.append(
      element("td", request.requester),
      element("td", request.action),
      element("td", request.resource),
      element("td", request.reason, "reason"),
      element("td", (request.granted_scopes || []).join(" ") + " for " + duration(request.lifetime_secs)),
      element("td", age(request.created_at)),
    );
    const open = element("button", "Open", "small open");
    open.addEventListener("click", () => openRequest(request.request_id));
    const cell = element("td");
    cell.append(open);
    row.append(cell);
    body.append(row);
  }
  $("review-section").hidden = body.rows.length === 0;
}

async function refresh() {
  await loadPending(true);
  await loadReview();
  await loadMine();
}

// What the caller may ask for, with what would happen, from the decision engine.
async function loadRequestable() {
  const page = await api("GET", "/v1/requestable?limit=200");
  const select = $("ask-target");
  select.replaceChildren();
  for (const entry of page.requestable) {
    if (entry.decision === "deny") continue;
    const what = entry.decision === "allow" ? "at once" : entry.approvals_required + " approval(s)";
    const option = element("option", entry.action + " on " + entry.resource + " (" + what + ")");
    option.value = JSON.stringify({ action: entry.action, resource: entry.resource });
    select.append(option);
  }
  $("ask-section").hidden = select.options.length === 0;
}

async function ask(event) {
  event.preventDefault();
  const target = JSON.parse($("ask-target").value);
  const body = { action: target.action, resource: target.resource, reason: $("ask-reason").value };
  const duration = $("ask-duration").value.trim();
  if (duration) body.duration = duration;
  try {
    const answer = await api("POST", "/v1/access-requests", body);
    $("ask-reason").value = "";
    if (answer.access_token) showToken(answer.access_token);
    say("Request " + answer.request_id + " is " + answer.status + ".");
    await loadMine();
  } catch (e) {
    say(e.message, true);
  }
}

async function loadMine() {
  const page = await api("GET", "/v1/access-requests?status=mine&limit=20");
  const body = $("mine").tBodies[0];
  body.replaceChildren();
  for (const request of page.requests) {
    const row = element("tr");
    row.dataset.requestId = request.request_id;
    row.append(
      element("td", request.action),
      element("td", request.resource),
      element("td", request.status, "status"),
      element("td", age(request.created_at) + " ago"),
    );
    const cell = element("td");
    if (request.status === "approved" || request.status === "issued") {
      const mint = element("button", "Get token", "small mint");
      mint.addEventListener("click", () => mintToken(request.request_id));
      cell.append(mint);
    }
    row.append(cell);
    body.append(row);
  }
}

async function mintToken(id) {
  try {
    const answer = await api("POST", "/v1/access-requests/" + encodeURIComponent(id) + "/token");
    showToken(answer.access_token);
    say("Token for " + id + " issued; it expires at " + answer.expires_at + ".");
    await loadMine();
  } catch (e) {
    say(e.message, true);
  }
}

function showToken(value) {
  $("minted").hidden = false;
  $("minted-token").value = value;
  $("minted-curl").textContent = "curl -H \"Authorization: Bearer $TOKEN\" https://service.example/…";
}

// Live status: the server's event stream (fetch, since EventSource cannot send a token),
// refreshing the lists on every event; reopened when it ends.
let following = false;
async function follow() {
  if (following) return;
  following = true;
  while (signedIn()) {
    try {
      const response = await fetch("/v1/events", {
        headers: authHeaders("GET"),
        cache: "no-store",
        credentials: "same-origin",
      });
      if (response.status === 401) {
        forget();
        say("Your sign-in has ended; sign in again.", true);
        break;
      }
      if (!response.ok || !response.body) throw new Error(response.statusText);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.split("\n").some((line) => line.startsWith("data:"))) {
            await refresh().catch(() => {});
            await redrawOpen();
          }
        }
      }
    } catch (e) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  following = false;
}

function showRequest(request) {
  openId = request.request_id;
  $("detail").hidden = false;
  $("detail-id").textContent = request.request_id;
  $("detail-status").textContent = request.status;
  const fields = $("detail-fields");
  fields.replaceChildren();
  const rows = [
    ["Requester", request.requester],
    ["Action", request.action],
    ["Resource", request.resource],
    ["Scopes asked", (request.scopes || []).join(" ") || "(what the policies grant)"],
    ["Scopes granted", request.granted_scopes ? request.granted_scopes.join(" ") || "(none)" : "-"],
    ["Duration asked", request.duration_secs ? duration(request.duration_secs) : "(the policies' default)"],
    ["Token lifetime", duration(request.lifetime_secs)],
    ["Reason", request.reason],
    ["Risk", riskText(request.risk)],
    ["Policies", (request.policies || []).join(", ")],
    ["Approvals", approvalsCount(request)],
    ["Stages", stagesText(request.stages)],
    ["Requested", request.created_at + " (" + age(request.created_at) + " ago)"],
    ["Expires", request.expires_at || "-"],
    ["Window opens", request.not_before || "when decided"],
  ];
  for (const [name, value] of rows) {
    fields.append(element("dt", name), element("dd", value));
  }
  const history = $("detail-history");
  history.replaceChildren(element("li", request.created_at + ": requested by " + request.requester));
  for (const answer of request.approvals || []) {
    const verb = (answer.decision === "approve" ? "approved" : "denied") +
      (answer.stage && answer.stage !== "default" ? " (stage " + answer.stage + ")" : "");
    const when = new Date(answer.at * 1000).toISOString().replace(".000", "");
    const comment = answer.comment ? ": " + answer.comment : "";
    history.append(element("li", when + ": " + verb + " by " + answer.approver + comment));
  }
  $("decide").hidden = request.status !== "pending";
  $("review").hidden = request.status !== "needs_review";
}

// The open request drawn again as it changes, leaving the message line to what the user did.
async function redrawOpen() {
  if (!openId) return;
  try {
    showRequest(await api("GET", "/v1/access-requests/" + encodeURIComponent(openId)));
  } catch (e) {
    // The next event or refresh tries again.
  }
}

async function openRequest(id) {
  try {
    showRequest(await api("GET", "/v1/access-requests/" + encodeURIComponent(id)));
    say("");
  } catch (e) {
    say(e.message, true);
  }
}

async function markReviewed() {
  if (!openId) return;
  const id = openId;
  try {
    const request = await api(
      "POST",
      "/v1/access-requests/" + encodeURIComponent(id) + "/review",
      { comment: $("review-comment").value },
    );
    $("review-comment").value = "";
    showRequest(request);
    say("Reviewed " + id + ".");
    await loadReview();
  } catch (e) {
    say(e.message, true);
  }
}

async function answer(decision) {
  if (!openId) return;
  const id = openId;
  try {
    const request = await api(
      "POST",
      "/v1/access-requests/" + encodeURIComponent(id) + "/" + decision,
      { comment: $("comment").value },
    );
    $("comment").value = "";
    showRequest(request);
    say((decision === "approve" ? "Approved " : "Denied ") + id + "; it is now " + request.status + ".");
    await loadPending(true);
  } catch (e) {
    say(e.message, true);
    // The policies want a fresher sign-in: the provider signs the approver in again.
    if (e.code === "reauthentication_required" && signedInBy === "session") {
      $("reauth").href = signInLink(0);
      $("reauth").hidden = false;
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("click", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("refresh").addEventListener("click", () => refresh().catch((e) => say(e.message, true)));
  $("mark-reviewed").addEventListener("click", markReviewed);
  $("ask-form").addEventListener("submit", ask);
  $("copy-token").addEventListener("click", () => navigator.clipboard.writeText($("minted-token").value));
  $("more").addEventListener("click", () => loadPending(false).catch((e) => say(e.message, true)));
  $("approve").addEventListener("click", () => answer("approve"));
  $("deny").addEventListener("click", () => answer("deny"));
  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("lookup-id").value.trim();
    if (id) openRequest(id);
  });
  window.addEventListener("hashchange", () => {
    const fromLink = /^#request=(.+)$/.exec(location.hash);
    if (fromLink && signedIn()) openRequest(decodeURIComponent(fromLink[1]));
    $("sso").href = signInLink();
  });
  setInterval(() => {
    if (signedIn()) refresh().catch(() => {});
  }, 15000);
  offerSignIn();
});
