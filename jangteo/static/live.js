// Jangteo — what the studio and watch pages share besides media: API calls, the chat socket that
// resumes by itself, the live shop state (products, stock, pin), formatting. Plain ES module.

import { tr } from "/static/i18n.js";
import { HttpProblem, apiUrl, homeOrigin, problemOf, t } from "/static/whip-whep.js";

export { HttpProblem, t };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Report an error in an event handler without stopping the caller's loop. */
export function report(err) {
  if (typeof reportError === "function") reportError(err);
  else setTimeout(() => { throw err; });
}

/** The readable part of one of our tokens: {bid, role, userId, name, expiresAt (ms)}; or null. */
export function claimsOf(token) {
  try {
    const body = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(body + "=".repeat((4 - (body.length % 4)) % 4));
    const raw = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
    return { bid: raw.b, role: raw.r, userId: raw.u, name: raw.n, expiresAt: raw.x * 1000 };
  } catch (_) {
    return null;
  }
}

/**
 * One API call. JSON in and out; a problem answer throws HttpProblem (its `code`, `status` and
 * `doc`); a network error throws HttpProblem(0, "network") after `retries` more attempts (only
 * safe for idempotent calls: GETs, or POSTs with an Idempotency-Key).
 */
export async function api(path, { method = "GET", token = null, body, headers = {}, retries = 0 } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const init = { method, headers: h, cache: "no-store" };
  if (body !== undefined) init.body = JSON.stringify(body);
  let resp;
  for (let attempt = 0; ; attempt++) {
    try {
      resp = await fetch(apiUrl(path), init); // the page's home node (whip-whep.js moveHome)
      break;
    } catch (_) {
      if (attempt >= retries) {
        throw new HttpProblem(0, "network", tr("err.network"));
      }
      await sleep(400 * 2 ** attempt);
    }
  }
  if (!resp.ok) throw await problemOf(resp);
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

/** A fresh Idempotency-Key: one per tap (a retry of the same tap reuses it). */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "tap-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const won = (n) => `${Number(n || 0).toLocaleString("ko-KR")}원`;

/** "4:05" for 245,000 ms; "0:00" when past. */
export function clock(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

export const timeOf = (ms) =>
  new Date(ms).toLocaleTimeString("ko-KR", { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** Make an element: h("li", {class: "x", dataset: {id}, onclick: f}, "text", child…). */
export function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

/** A short explanation of an API refusal, in the page's language. */
export function explain(err) {
  const left = err?.doc?.left;
  switch (err?.code) {
    case "sold_out":
      return left > 0 ? tr("err.sold_out_left", { n: left }) : tr("err.sold_out");
    case "limit_exceeded":
      return left > 0 ? tr("err.limit_left", { n: left }) : tr("err.limit");
    case "not_eligible":
      return err?.doc?.needs === "verified" ? tr("err.needs_verified") : tr("err.joined_before");
    case "deal_ended":
    case "order_expired":
    case "option_required":
    case "broadcast_ended":
    case "wrong_role":
    case "cohost_not_allowed":
    case "no_picture":
    case "payment_required":
    case "too_many_open_orders":
    case "hold_cooldown":
    case "oversubscribed":
    case "too_many_guests":
    case "token_revoked":
    case "network":
    case "unknown_currency":
      return tr(`err.${err.code}`);
    default:
      return `${tr("err.refused")} (${err?.message || err})`;
  }
}

/** What a chat `error` event means for the person typing. */
function chatRefusal(e) {
  const wait = e.retry_ms ? Math.ceil(e.retry_ms / 1000) : 0;
  switch (e.code) {
    case "frozen":
    case "banned":
    case "banned_word":
      return tr(`chat.${e.code}`);
    case "slow_mode":
    case "rate_limited":
      return tr(`chat.${e.code}`, { s: wait });
    default:
      return `${tr("chat.not_sent")} (${e.detail || e.code})`;
  }
}

/** What every page's chat shows the same way: a line (once: history and live may overlap), a line
 * taken down, the host's announcement (#announcement). True when `e` was one of these. */
export function showChatEvent(e, log, addLine, chatLine) {
  switch (e.type) {
    case "chat":
      if (!log.querySelector(`li[data-id="${CSS.escape(e.id)}"]`)) addLine(chatLine(e));
      return true;
    case "deleted":
      log.querySelector(`li[data-id="${CSS.escape(e.id)}"]`)?.remove();
      return true;
    case "announcement": {
      const el = document.getElementById("announcement");
      el.hidden = !e.text;
      el.textContent = e.text || "";
      return true;
    }
    default:
      return false;
  }
}

/** A page's chat form (#chat-form): sends the line typed in `input` over `chat()`. `refusal` says
 * why the last line was not taken (a refusal event, or no connection: `notConnected()`) until
 * the next keystroke; `onChange` redraws the page's chat state. */
export class ChatForm {
  constructor(input, chat, notConnected, onChange) {
    this.refusal = "";
    this.onChange = onChange;
    document.getElementById("chat-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      this.refusal = "";
      if (chat().send({ type: "chat", text })) input.value = "";
      else this.refusal = notConnected();
      onChange();
    });
    input.addEventListener("input", () => {
      if (!this.refusal) return;
      this.refusal = "";
      onChange();
    });
  }

  /** The server refused a line (a chat `error` event). */
  refused(e) {
    this.refusal = chatRefusal(e);
    this.onChange();
  }
}

// -- the chat socket -------------------------------------------------------------------------------
const WS_BACKOFF_MS = [300, 1000, 2000, 4000, 8000, 15000];

/**
 * WS /ws/{bid}: reconnects by itself with backoff and resumes with last_id (the last `sid` seen),
 * so no event is lost or repeated across a drop; the server answers {"type":"reset"} when that
 * point left its history. After two connections that never opened it asks getToken(true) for a
 * fresh token (an expired guest token is refused at the handshake).
 *
 * options: bid, getToken(refresh) -> Promise<string>, onEvent(event), onState(state).
 * States: idle, connecting, open, reconnecting, stopped.
 */
export class ChatSocket {
  constructor(options) {
    this.o = options;
    this.state = "idle";
    this.lastId = null;
    this.ws = null;
    this.attempt = 0;
    this.connects = 0; // connections that opened
    this._failedOpens = 0;
    this._timer = null;
    addEventListener("online", () => {
      if (this.state === "reconnecting") this._openNow();
    });
  }

  _set(state) {
    this.state = state;
    this.o.onState?.(state);
  }

  start() {
    if (this.state === "idle" || this.state === "stopped") this._open(false);
  }

  stop() {
    clearTimeout(this._timer);
    this._set("stopped");
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
  }

  /** Close and reconnect now (the page thinks the link is dead, or needs a new token). */
  restart(refreshToken = false) {
    clearTimeout(this._timer);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    this._open(refreshToken);
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  _openNow() {
    clearTimeout(this._timer);
    this._open(this._failedOpens >= 2);
  }

  async _open(refreshToken) {
    this._set(this.connects ? "reconnecting" : "connecting");
    let token;
    try {
      token = await this.o.getToken(refreshToken);
    } catch (_) {
      this._retry();
      return;
    }
    if (this.state === "stopped") return;
    const url = new URL(`/ws/${encodeURIComponent(this.o.bid)}`, homeOrigin());
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", token);
    if (this.lastId) url.searchParams.set("last_id", this.lastId);
    const ws = new WebSocket(url);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.attempt = 0;
      this._failedOpens = 0;
      this.connects++;
      this._set("open");
    };
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      let doc;
      try {
        doc = JSON.parse(m.data);
      } catch (_) {
        return;
      }
      for (const event of Array.isArray(doc) ? doc : [doc]) {
        if (event.sid) this.lastId = event.sid;
        try {
          this.o.onEvent(event);
        } catch (err) {
          report(err);
        }
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.state === "stopped") return;
      this.ws = null;
      if (!opened) this._failedOpens++;
      this._retry();
    };
  }

  _retry() {
    if (this.state === "stopped") return;
    const base = WS_BACKOFF_MS[Math.min(this.attempt, WS_BACKOFF_MS.length - 1)];
    this.attempt++;
    this._set("reconnecting");
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._openNow(), Math.round(base * (0.75 + Math.random() * 0.5)));
  }
}

// -- the live shop ---------------------------------------------------------------------------------
/**
 * Products with live stock and the pin, from GET …/products and then the events (pin, product,
 * stock) in stream order. Events that arrive while a load is in flight are applied after it, so an
 * answer read before an event never overwrites that event. Call load() again after a `reset`.
 */
export class Shop {
  constructor(bid, onChange) {
    this.bid = bid;
    this.onChange = onChange;
    this.products = new Map();
    this.pin = null; // {product_id, deal_price, deal_ends_at}
    this.loaded = false;
    this._buffer = null; // events held while loads are in flight
    this._loads = 0;
    this._stale = false; // events were held that no answer has been replayed over yet
  }

  async load() {
    this._buffer = this._buffer || [];
    this._loads++;
    try {
      const doc = await api(`/api/broadcasts/${encodeURIComponent(this.bid)}/products`, { retries: 2 });
      this.products = new Map(doc.products.map((p) => [p.id, p]));
      this.pin = doc.pinned || null;
      this.loaded = true;
      // every event held since the first load began, in order, over the fresh answer: the last
      // event of each product is at least as new as the answer, so the state converges
      for (const e of this._buffer) this._apply(e);
      this._stale = false;
    } finally {
      if (--this._loads === 0) {
        const held = this._buffer;
        this._buffer = null;
        if (this._stale) for (const e of held) this._apply(e); // no answer since: apply them
        this._stale = false;
        this.onChange(null);
      }
    }
  }

  /** Feed every chat event here; true if it was a shop event. */
  handle(e) {
    if (e.type !== "pin" && e.type !== "product" && e.type !== "stock") return false;
    if (this._buffer) {
      this._buffer.push(e);
      this._stale = true;
    } else {
      this._apply(e);
      this.onChange(e);
    }
    return true;
  }

  _apply(e) {
    if (e.type === "pin") {
      if (!e.product) {
        this.pin = null;
        return;
      }
      const { deal, ...product } = e.product;
      this.products.set(product.id, product);
      this.pin = { product_id: product.id, deal_price: deal ? deal.price : null,
        deal_ends_at: deal ? deal.ends_at : null };
    } else if (e.type === "product") {
      this.products.set(e.product.id, e.product);
    } else if (e.type === "stock") {
      const p = this.products.get(e.product_id);
      if (!p) return;
      if (e.option && p.options?.length) {
        const opt = p.options.find((o) => o.id === e.option);
        if (opt) opt.stock = e.left;
        p.stock = p.options.reduce((sum, o) => sum + (o.stock || 0), 0);
      } else p.stock = e.left;
    }
  }

  /** The pinned product with its deal ({price, ends_at} or null), or null. */
  pinned() {
    if (!this.pin) return null;
    const p = this.products.get(this.pin.product_id);
    if (!p) return null;
    const deal = this.pin.deal_price === null || this.pin.deal_price === undefined ? null
      : { price: this.pin.deal_price, ends_at: this.pin.deal_ends_at };
    return { ...p, deal };
  }

  list() {
    return [...this.products.values()];
  }
}

/** The price a buyer pays now for `product` (deal applied), and whether the deal is over. */
export function priceNow(product, now = Date.now()) {
  const deal = product.deal;
  if (!deal) return { price: product.price, ended: false };
  const ended = deal.ends_at !== null && deal.ends_at !== undefined && now >= deal.ends_at;
  return { price: deal.price, ended };
}
