// Jangteo — shared WHIP (RFC 9725) / WHEP client for our pages. Plain ES module, no build step.
//
// A MediaSession is one WHIP publish or WHEP playback that keeps itself up: it POSTs an SDP
// offer (all candidates gathered first: the server does not do trickle ICE), sets the answer,
// remembers the Location to DELETE, and reconnects with backoff when the connection fails,
// disconnects for too long, or (for playback) stops receiving media. Given the deployment's other
// nodes (`nodes`), a playback that fails moves to the next of them at once (round robin).
import { store, stored } from "/static/storage.js";


export const GATHER_TIMEOUT_MS = 3000; // gather what we can, then send it anyway
export const DISCONNECT_GRACE_MS = 4000; // 'disconnected' often heals by itself
export const STALL_MS = 8000; // playback: no bytes for this long while connected -> reconnect
export const CONNECT_TIMEOUT_MS = 15000; // answer received but ICE/DTLS never connects -> retry
const CLOSED_GRACE_MS = 2000; // a publisher whose DTLS the server closed publishes again after
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
// with other nodes to move to: 'disconnected' this long, or bytes that stop this long while
// connected (a live node sends the picture or its slate all the time), is a node gone; the next
// one is tried at once
export const FAILOVER_GRACE_MS = 1500;
export const FAILOVER_STALL_MS = 2500;
const FAILOVER_BACKOFF_MS = [0, 250, 500, 1000, 2000, 4000];
const INFO_TIMEOUT_MS = 5000; // a node that does not answer in time counts as gone

// Where API calls and the chat go: the page's own origin, unless the page moved them to another
// node of the deployment because its own stopped answering (moveHome).
let home = null;

/** The page's home: the origin its API calls and chat socket go to. */
export const homeOrigin = () => home || location.origin;

/** An API path (or URL) on the page's home. */
export const apiUrl = (path) => (home ? new URL(path, home).href : path);

/** From now on, send API calls and the chat to `origin` (another node of the deployment). */
export function moveHome(origin) {
  home = new URL(origin).origin === location.origin ? null : new URL(origin).origin;
}

/** When the node that answered `info` (GET /api/broadcasts/{bid}) is being drained, move the
 * page's API calls and chat to another node: `preferred` (where the page plays or publishes
 * from) if it is listed, else the first of `info.nodes`. True when the page moved. */
function leaveDrained(info, preferred = null) {
  if (!info?.draining || !Array.isArray(info.nodes) || !info.nodes.length) return false;
  const origins = info.nodes.map((u) => new URL(u).origin);
  const next = preferred && origins.includes(preferred) ? preferred : origins[0];
  if (next === homeOrigin()) return false;
  moveHome(next);
  return true;
}

/** An HTTP error answer, read from application/problem+json when there is one. */
export class HttpProblem extends Error {
  constructor(status, code, detail, doc = null) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
    this.doc = doc || {}; // the whole problem document (extra members such as `left`)
  }
}

export async function problemOf(resp) {
  const retryAfter = resp.headers.get("Retry-After");
  let code = "";
  let detail = `HTTP ${resp.status}`;
  let doc = null;
  try {
    doc = await resp.json();
    code = doc.code || "";
    detail = doc.detail || detail;
  } catch (_) {
    /* not JSON */
  }
  const problem = new HttpProblem(resp.status, code, detail, doc);
  problem.retryAfter = retryAfter;
  return problem;
}

/** Resolves once ICE gathering is complete (or after timeoutMs, with what was gathered). */
export function iceGathered(pc, timeoutMs = GATHER_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onState);
      pc.removeEventListener("icecandidate", onCandidate);
      resolve();
    };
    const onState = () => pc.iceGatheringState === "complete" && done();
    const onCandidate = (e) => !e.candidate && done();
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", onState);
    pc.addEventListener("icecandidate", onCandidate);
  });
}

/** The node did not answer at all (stopped, unreachable, silent): not an HTTP answer. */
export class NodeUnreachable extends Error {}

const POST_TIMEOUT_MS = 10000; // a node that takes this long to answer an offer counts as gone

/** Offer -> POST -> answer. Returns the absolute session URL (from Location). */
export async function negotiate(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  let resp;
  try {
    resp = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
      signal: AbortSignal.timeout?.(POST_TIMEOUT_MS),
    });
  } catch (err) {
    throw new NodeUnreachable(`${new URL(url).origin}: ${err.message || err}`);
  }
  if (resp.status !== 201) throw await problemOf(resp);
  const location = resp.headers.get("Location");
  const answer = await resp.text();
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  return location ? new URL(location, url).href : null;
}

/** DELETE a session; never throws. keepalive lets it outlive the page (pagehide). */
export function deleteSession(sessionUrl, token, keepalive = false) {
  if (!sessionUrl) return Promise.resolve();
  return fetch(sessionUrl, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${token}` },
    keepalive,
  }).catch(() => {});
}

/** Video codecs this browser can send, e.g. ["video/VP8", "video/H264", ...]. */
export function sendableVideoCodecs() {
  const caps = (window.RTCRtpSender && RTCRtpSender.getCapabilities?.("video")?.codecs) || [];
  return [...new Set(caps.map((c) => c.mimeType))];
}

/** Put `mime` first in the transceiver's codec list (the rest stay as fallbacks). */
export function preferCodec(transceiver, mime) {
  if (!transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return false;
  const caps = RTCRtpSender.getCapabilities(mime.split("/")[0].toLowerCase())?.codecs || [];
  const same = (c) => c.mimeType.toLowerCase() === mime.toLowerCase();
  const wanted = caps.filter(same);
  if (!wanted.length) return false;
  transceiver.setCodecPreferences([...wanted, ...caps.filter((c) => !same(c))]);
  return true;
}

/** Problems that retrying will not fix. */
function isFatal(err) {
  if (!(err instanceof HttpProblem)) return false; // network errors: retry
  if (err.status === 401) return false; // caller may refresh the token
  if (waitFor(err) !== null) return false;
  return err.status === 400 || err.status === 403 || err.status === 404 ||
    err.status === 409 || err.status === 413 || err.status === 415;
}

/** Milliseconds to wait before asking again, for answers that mean "not yet": the show has not
 * started (409 not_live) or the server is at a limit (429, 503); null for anything else. */
function waitFor(err) {
  if (!(err instanceof HttpProblem)) return null;
  if (!(err.status === 429 || err.status === 503 || (err.status === 409 && err.code === "not_live"))) {
    return null;
  }
  const s = Number(err.retryAfter);
  return Number.isFinite(s) && s > 0 ? Math.min(s, 60) * 1000 : 5000;
}

const connectedPcs = new WeakSet(); // peer connections that reached 'connected' once

/**
 * One WHIP or WHEP session that reconnects by itself.
 *
 * options: kind ("whip" | "whep"), url, getToken(refresh: boolean) -> Promise<string>,
 *   tracks (whip: MediaStreamTracks to send), videoCodec (whip: e.g. "video/VP8"),
 *   onStream(MediaStream) (whep), onState(state, detail),
 *   nodes() -> the deployment's node URLs (GET /api/broadcasts/{bid} `nodes`; [] for one node):
 *   with more than one, a failed playback moves to the next node (same path, same token), and
 *   a session a node refuses because it is at a limit or draining (503) goes to the next one.
 * States: idle, connecting, connected, reconnecting, waiting (the show has not started, or the
 * server is at a limit: it asks again after Retry-After), stopped, failed (fatal: see `error`).
 */
export class MediaSession {
  constructor(options) {
    this.o = options;
    this.state = "idle";
    this.error = null;
    this.pc = null;
    this.sessionUrl = null;
    this.token = null;
    this.attempt = 0; // consecutive failures
    this.connects = 0; // sessions that reached 'connected'
    this._timer = null;
    this._watch = null;
    this._generation = 0;
    this.lastReason = null; // why we last reconnected
    this.node = null; // the origin the session goes to (null: the one of `url`)
    this._own = null; // the origin of `url` (read once per connect: it may be a getter)
    this.moves = 0; // times the session moved to another node
    this._silent = 0; // consecutive offers the node did not answer at all
    this._hops = 0; // nodes tried since the last connect because one was draining
    this._closedThere = false; // the server closed the current session (its DTLS closed)
  }

  /** The origins to play from: url's own, then the other nodes' (options.nodes), once each. */
  _nodes() {
    const list = [this._own || new URL(this.o.url, location.href).origin];
    if (this.node && !list.includes(this.node)) list.push(this.node); // where we went (a hop)
    for (const url of this.o.nodes?.() || []) {
      try {
        const origin = new URL(url).origin;
        if (!list.includes(origin)) list.push(origin);
      } catch (_) {
        /* not a URL */
      }
    }
    return list;
  }

  /** Playback with other nodes to move to. */
  _canMove() {
    return this.o.kind === "whep" && this._nodes().length > 1;
  }

  /** After a failure: aim at the node after the one that failed; false with no other node. */
  _moveOn() {
    const list = this._nodes();
    if (list.length < 2) return false;
    const i = list.indexOf(this.node || list[0]);
    this.node = list[(i + 1) % list.length];
    this.moves++;
    return true;
  }

  /** The origin the session goes to now (the node it plays from while connected). */
  get origin() {
    return this.node || this._own || new URL(this.o.url, location.href).origin;
  }

  /** The URL to POST to: `url` itself, or its path and query on the node we moved to. */
  _target() {
    const own = new URL(this.o.url, location.href);
    this._own = own.origin;
    return this.node && this.node !== own.origin ? new URL(own.pathname + own.search, this.node).href : own.href;
  }

  _set(state, detail) {
    this.state = state;
    this.o.onState?.(state, detail);
  }

  start() {
    if (this.state !== "idle" && this.state !== "stopped" && this.state !== "failed") return;
    this.attempt = 0;
    this.error = null;
    this._connect(false);
  }

  /** Leave for good: DELETE the session (keepalive when the page is going away; not at all when
   * the server ended it, e.g. the broadcast is over: there is nothing left to delete). */
  stop({ keepalive = false, ended = false } = {}) {
    this._generation++;
    clearTimeout(this._timer);
    clearInterval(this._watch);
    const done = ended ? Promise.resolve() : deleteSession(this.sessionUrl, this.token, keepalive);
    this.sessionUrl = null;
    this._closePc();
    this._set("stopped");
    return done;
  }

  _closePc() {
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.ontrack = null;
      this.pc.close();
      this.pc = null;
    }
  }

  /** Send another track of the same kind (whip: the phone's other camera) without a new
   * session; a reconnect later sends it too. */
  async replaceTrack(track) {
    const tracks = this.o.tracks || [];
    const i = tracks.findIndex((t) => t.kind === track.kind);
    if (i >= 0) tracks[i] = track;
    const sender = this.pc?.getSenders().find((s) => s.track?.kind === track.kind);
    if (sender) await sender.replaceTrack(track);
  }

  /** Try again now (e.g. the page learnt that the show went live while we were waiting). */
  kick() {
    if (this.state === "waiting" || this.state === "reconnecting") {
      clearTimeout(this._timer);
      this._connect(false);
    }
  }

  _wait(err, delay) {
    // playback at a limit: ask another node next time (a publisher stays: moving it moves the
    // show's origin)
    if (err.status !== 409 && this.o.kind === "whep") this._moveOn();
    this._generation++;
    clearTimeout(this._timer);
    this._closePc();
    this.lastReason = err.code || String(err.status);
    this._set("waiting", err);
    this._timer = setTimeout(() => this._connect(false), Math.round(delay * (0.9 + Math.random() * 0.2)));
  }

  /** Try again after a backoff; `unreachable`: the node did not answer at all. */
  _retry(reason, unreachable = false) {
    this._generation++;
    clearTimeout(this._timer);
    clearInterval(this._watch);
    if (!this._closedThere) deleteSession(this.sessionUrl, this.token); // free it there now
    this._closedThere = false;
    this.sessionUrl = null;
    this._closePc();
    // publishing: a node that twice in a row does not answer while this device is online is
    // gone: publish through the next one (it becomes the origin; a blip of our own network
    // does not move the show). Other failures: the same node again.
    this._silent = unreachable && navigator.onLine !== false ? this._silent + 1 : 0;
    let moved = false;
    if (this.o.kind === "whip" && this._silent >= 2) {
      this._silent = 0;
      moved = this._moveOn();
    }
    moved = moved || (this._canMove() && this._moveOn());
    const steps = moved ? FAILOVER_BACKOFF_MS : BACKOFF_MS;
    const base = steps[Math.min(this.attempt, steps.length - 1)];
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt++;
    this.lastReason = reason;
    this._set("reconnecting", { reason, delay, attempt: this.attempt });
    this._timer = setTimeout(() => this._connect(false), delay);
  }

  async _connect(refreshToken) {
    const gen = ++this._generation;
    this._set(this.connects || this.attempt ? "reconnecting" : "connecting");
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    try {
      if (this.o.kind === "whip") {
        for (const track of this.o.tracks) {
          const t = pc.addTransceiver(track, { direction: "sendonly" });
          if (track.kind === "video" && this.o.videoCodec) preferCodec(t, this.o.videoCodec);
        }
      } else {
        const stream = new MediaStream();
        pc.addTransceiver("video", { direction: "recvonly" });
        pc.addTransceiver("audio", { direction: "recvonly" });
        pc.ontrack = (e) => {
          stream.addTrack(e.track);
          this.o.onStream?.(stream);
        };
      }
      pc.onconnectionstatechange = () => gen === this._generation && this._onPcState(pc);
      this.token = await this.o.getToken(refreshToken);
      const url = await negotiate(pc, this._target(), this.token);
      if (gen !== this._generation) {
        deleteSession(url, this.token); // stopped while we were negotiating
        return;
      }
      this.sessionUrl = url;
      this._startWatchdog(pc, gen);
      if (pc.connectionState !== "connected") {
        clearTimeout(this._timer);
        this._timer = setTimeout(() => {
          if (this.pc === pc && pc.connectionState !== "connected") this._retry("connect timeout");
        }, CONNECT_TIMEOUT_MS);
      }
    } catch (err) {
      if (gen !== this._generation) return;
      if (err instanceof HttpProblem && err.status === 401 && !refreshToken) {
        this._closePc();
        return this._connect(true); // expired or bad token: ask for a new one once
      }
      const elsewhere = err instanceof HttpProblem && err.code === "origin_elsewhere";
      const there = elsewhere && err.doc.origin?.url;
      if (there) {
        this._toOrigin(there);
        return;
      }
      const draining = err instanceof HttpProblem && err.code === "draining";
      if (draining && this._hops < this._nodes().length - 1 && this._moveOn()) {
        this._hops++; // the operator takes this node out of service: the next one, now
        this._closePc();
        this._connect(false);
        return;
      }
      const wait = waitFor(err);
      const others = this._canMove() ? this._nodes().length - 1 : 0;
      if (wait !== null && err.status !== 409 && this.attempt < others) {
        this._retry(err.code || String(err.status)); // this node is at a limit: the next one now
        return;
      }
      if (wait !== null) {
        this._wait(err, wait);
        return;
      }
      if (isFatal(err)) {
        this._closePc();
        this.error = err;
        this._set("failed", err);
        return;
      }
      this._retry(err.message || String(err), err instanceof NodeUnreachable);
    }
  }

  /** A co-host's request reached a node that does not compose the show: publish where it is
   * composed (the node the answer names), at once the first times, then with backoff. */
  _toOrigin(url) {
    this._closePc();
    this.node = new URL(url).origin;
    this.moves++;
    if (this.attempt++ < 3) {
      this._connect(false);
      return;
    }
    this._retry("origin_elsewhere");
  }

  _onPcState(pc) {
    const s = pc.connectionState;
    if (s === "connected") {
      clearTimeout(this._timer);
      this.attempt = 0;
      this._hops = 0;
      this._silent = 0;
      if (!connectedPcs.has(pc)) {
        connectedPcs.add(pc);
        this.connects++;
      }
      this._set("connected");
    } else if (s === "failed" || s === "closed") {
      this._retry(`connection ${s}`);
    } else if (s === "disconnected") {
      this._set("reconnecting", { reason: "disconnected" });
      clearTimeout(this._timer);
      const grace = this._canMove() ? FAILOVER_GRACE_MS : DISCONNECT_GRACE_MS;
      this._timer = setTimeout(() => {
        if (this.pc === pc && pc.connectionState !== "connected") this._retry("disconnected");
      }, grace);
    }
  }

  // A server that drops us may not say so; a DTLS close does, and (playback) bytes that stop.
  _startWatchdog(pc, gen) {
    clearInterval(this._watch);
    const whip = this.o.kind === "whip";
    // a node that stops, drains, or lets a publisher go to the show's new origin closes its
    // DTLS (Chromium keeps saying 'connected'): the session is gone there (nothing to DELETE);
    // play from the next node at once, or publish again after a moment (the end of the show
    // closes it too, and the page stops the session then)
    const dtls = (whip ? pc.getSenders() : pc.getReceivers())[0]?.transport;
    if (dtls) {
      dtls.onstatechange = () => {
        const over = dtls.state === "closed" || dtls.state === "failed";
        if (!over || gen !== this._generation || this.pc !== pc) return;
        const reason = `transport ${dtls.state}`;
        this._closedThere = true; // the session is gone on the server: nothing to DELETE
        if (!whip) {
          if (this._canMove()) this._retry(reason);
          return;
        }
        clearTimeout(this._timer);
        this._set("reconnecting", { reason });
        this._timer = setTimeout(() => {
          if (gen === this._generation && this.pc === pc) this._retry(reason);
        }, CLOSED_GRACE_MS);
      };
    }
    if (whip) return;
    let last = -1;
    let lastChange = performance.now();
    this._watch = setInterval(async () => {
      if (gen !== this._generation || this.pc !== pc) return;
      const bytes = await inboundBytes(pc);
      const now = performance.now();
      if (bytes !== last) {
        last = bytes;
        lastChange = now;
      } else if (pc.connectionState === "connected" &&
        now - lastChange > (this._canMove() && last > 0 ? FAILOVER_STALL_MS : STALL_MS)) {
        this._retry("no media");
      }
    }, 500);
  }

  /** A few numbers for the status line and for tests. */
  async stats() {
    const out = { state: this.state, connects: this.connects, codec: null, frames: 0, bytes: 0 };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    const rtpType = this.o.kind === "whip" ? "outbound-rtp" : "inbound-rtp";
    report.forEach((s) => {
      if (s.type !== rtpType || s.kind !== "video") return;
      out.frames += (this.o.kind === "whip" ? s.framesEncoded : s.framesDecoded) || 0;
      out.bytes += (this.o.kind === "whip" ? s.bytesSent : s.bytesReceived) || 0;
      const codec = s.codecId && report.get(s.codecId);
      if (codec) out.codec = codec.mimeType;
      if (s.frameWidth) out.size = `${s.frameWidth}x${s.frameHeight}`;
    });
    return out;
  }
}

async function inboundBytes(pc) {
  let total = 0;
  try {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp") total += s.bytesReceived || 0;
    });
  } catch (_) {
    /* closing */
  }
  return total;
}

/** The broadcast id from /watch/{bid} or /studio/{bid}. */
export function broadcastId() {
  const parts = location.pathname.split("/").filter(Boolean);
  return decodeURIComponent(parts[parts.length - 1] || "");
}

/**
 * The page's token: ?token=… (then hidden from the address bar and kept for reloads in
 * sessionStorage), else what this tab stored before. null when there is none.
 */
export function pageToken(bid, kind) {
  const key = `jangteo:${kind}:${bid}`;
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    store(key, fromUrl, "session");
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
    return fromUrl;
  }
  return stored(key, "session");
}

const GUEST_KEY = "jangteo:guest";

/** A guest viewer token (no auth needed). The guest key the server hands out is kept in
 * localStorage and shown again on every later request: the same person on every show (their
 * orders, their chat standing), and no new identity to mint. */
export async function guestToken(bid, name = "guest") {
  const guest = stored(GUEST_KEY);
  const resp = await fetch(apiUrl(`/api/broadcasts/${encodeURIComponent(bid)}/tokens`), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ role: "viewer", name, ...(guest ? { guest } : {}) }),
  });
  if (resp.status !== 201) throw await problemOf(resp);
  const doc = await resp.json();
  if (doc.guest) store(GUEST_KEY, doc.guest);
  return doc.token;
}

/** A viewer page's token: `token` while it lasts (one from the page's link or an earlier visit),
 * else a guest's, minted once however many ask at the same time (the player and the chat), named
 * `name()`, kept for this tab (a reload is the same guest: their orders, their messages) and
 * handed to `onFresh`. */
export class ViewerToken {
  constructor(bid, token, name, onFresh = () => {}) {
    this.bid = bid;
    this.token = token;
    this.name = name;
    this.onFresh = onFresh;
    this.minting = null;
  }

  get(refresh = false) {
    if (this.token && !refresh) return Promise.resolve(this.token);
    this.minting ??= guestToken(this.bid, this.name()).then((fresh) => {
      this.token = fresh;
      store(`jangteo:watch:${this.bid}`, fresh, "session");
      this.onFresh(fresh);
      return fresh;
    }).finally(() => { this.minting = null; });
    return this.minting;
  }
}

/** GET /api/broadcasts/{bid} (from the page's home, or `origin`); null on network errors and
 * when no answer comes in time. Throws HttpProblem (e.g. 404). */
export async function broadcastInfo(bid, origin = null) {
  const path = `/api/broadcasts/${encodeURIComponent(bid)}`;
  let resp;
  try {
    resp = await fetch(origin ? new URL(path, origin).href : apiUrl(path), {
      cache: "no-store",
      signal: AbortSignal.timeout?.(INFO_TIMEOUT_MS),
    });
  } catch (_) {
    return null;
  }
  if (!resp.ok) throw await problemOf(resp);
  return resp.json();
}

/** GET /api/broadcasts/{bid} from the page's home, which moves to the node `session` (the
 * page's player or camera) goes through when home does not answer, or to another node when home
 * is drained; `onMoved()` then (the page's chat follows its calls). */
export async function followedInfo(bid, session, onMoved) {
  const via = session?.state === "connected" ? session.origin : null;
  let info = await broadcastInfo(bid);
  if (!info && via && via !== homeOrigin()) {
    info = await broadcastInfo(bid, via); // home does not answer, the node we go through does
    if (info) {
      moveHome(via);
      onMoved();
    }
  }
  if (info && leaveDrained(info, via)) onMoved();
  return info;
}

/** Two-language label helper: "한국어 · English". */
export const t = (ko, en) => `${ko} · ${en}`;
