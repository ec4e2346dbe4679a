import {
  MediaSession, ViewerToken, broadcastId, followedInfo, homeOrigin, pageToken,
} from "/static/whip-whep.js";
import { savedName, store, stored } from "/static/storage.js";
import {
  ChatForm, ChatSocket, Shop, api, claimsOf, clock, h, priceNow, showChatEvent,
} from "/static/live.js";
import { BuyFlow } from "/static/buy.js";
import {
  LANGS, LANG_NAMES, currentCurrency, currentLang, offeredCurrencies, price, setCurrency, setLang, tr,
  useCurrency, useLang, won,
} from "/static/i18n.js";

const bid = broadcastId();
const $ = (id) => document.getElementById(id);
const video = $("player"), statusEl = $("status"), badge = $("badge");
const unmute = $("unmute"), playBtn = $("play");
const initial = pageToken(bid, "watch");
let me = initial ? claimsOf(initial) : null;
let infoTimer = null;
let over = false; // the broadcast ended or does not exist

function status(text, kind = "") {
  statusEl.textContent = text;
  statusEl.dataset.kind = kind;
}

// the page's token, else (none given, or it expired) a guest's
const guestName = () => tr("watch.guest_name", { n: Math.floor(1000 + Math.random() * 9000) });
const viewerToken = new ViewerToken(bid, initial, () => savedName(guestName()), (fresh) => {
  me = claimsOf(fresh);
});
const getToken = (refresh) => viewerToken.get(refresh);

// -- video ---------------------------------------------------------------------------------------
function tryPlay() {
  const p = video.play();
  if (p && p.catch) {
    p.then(() => { playBtn.hidden = true; }).catch(() => { playBtn.hidden = false; });
  }
}

// -- renditions: the ladder the server encodes, and the data saver that pins its lowest rung --------
const SAVER_KEY = "jangteo:data-saver"; // per browser, not per broadcast
const saverBtn = document.querySelector('[data-action="data-saver"]');
const statsEl = $("stats");
let renditions = []; // [{name, width, height, bitrate}], highest first (GET /api/broadcasts/{bid})
let saverOn = false;
saverOn = stored(SAVER_KEY) === "1";
let requested = null; // the rung the current session asked for ("" for auto); null: not asked yet
let pinMisses = 0; // 404 rendition_not_found answers to our pin
let pinBroken = false; // the server did not know the rung we named, twice: stay on auto
let switching = false; // a reconnect for a new choice is under way

/** The rung to ask for: the lowest one when the data saver is on (and there is more than one). */
function wantedRendition() {
  if (!saverOn || pinBroken || renditions.length < 2) return "";
  return renditions[renditions.length - 1].name;
}

const WHEP_URL = new URL(`/whep/${encodeURIComponent(bid)}`, location.href).href;
// the deployment's nodes (GET /api/broadcasts/{bid} `nodes`): where the player goes when its node fails
let nodeUrls = [];

const player = new MediaSession({
  kind: "whep",
  // read at every (re)connect: the data saver's choice goes into the URL there
  get url() {
    requested = wantedRendition();
    return requested ? `${WHEP_URL}?rendition=${encodeURIComponent(requested)}` : WHEP_URL;
  },
  getToken,
  nodes: () => nodeUrls,
  onStream(stream) {
    if (video.srcObject !== stream) video.srcObject = stream;
    tryPlay();
  },
  onState(state, detail) {
    if (switching && (state === "connecting" || state === "reconnecting")) {
      status(tr("status.switching"));
    } else if (state === "connecting") status(tr("status.connecting"));
    else if (state === "connected") {
      status(tr("status.playing"), "ok");
      refreshInfo();
    } else if (state === "reconnecting") status(tr("status.reconnecting"));
    else if (state === "waiting") {
      if (detail?.code === "not_live") status(tr("status.starts_soon"));
      else status(tr("status.busy"));
    } else if (state === "failed") {
      if (detail?.code === "rendition_not_found" && requested) {
        // the ladder changed under us: learn it again and ask once more (then: auto)
        pinBroken = ++pinMisses >= 2;
        refreshInfo().finally(() => { if (!over) player.start(); });
      } else if (detail?.code === "broadcast_ended") ended();
      else if (detail?.status === 404) finish(tr("status.not_found"), "error");
      else finish(`${tr("status.cannot_play")} (${detail?.message || ""})`, "error");
    }
  },
});

/** Playback is over for good: say why on the picture, stop, hide the controls. */
function finish(text, kind = "") {
  over = true;
  status(text, kind);
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = false;
  unmute.hidden = true;
  playBtn.hidden = true;
  saverBtn.hidden = true;
  // a show that ended took its sessions with it: nothing to DELETE
  if (player.state !== "stopped") player.stop({ ended: badge.dataset.status === "ended" });
  clearInterval(infoTimer);
  renderProduct();
}

function ended() {
  badge.dataset.status = "ended";
  badge.textContent = tr("status.ended");
  $("viewers").textContent = "";
  finish(tr("status.show_ended"));
  offerReplay();
}

// -- the replay: once the show is over, offer it (and open it as soon as it is ready) ------------
const REPLAY_POLL_MS = 3000; // while the server finishes the recording
const REPLAY_OPEN_MS = 3000; // the notice before the page moves on to the replay
let replayOffered = false;

function offerReplay() {
  if (replayOffered || !bid) return;
  replayOffered = true;
  const link = $("replay-link");
  link.href = `/replay/${encodeURIComponent(bid)}`;
  const check = async () => {
    let doc;
    try {
      doc = await api(`/api/broadcasts/${encodeURIComponent(bid)}/replay`, { retries: 1 });
    } catch (err) {
      if (err.status !== 404) setTimeout(check, REPLAY_POLL_MS);
      return;
    }
    if (doc.status === "none") return; // not recorded: nothing to offer
    link.hidden = false;
    if (doc.status === "ready") {
      status(tr("status.opening_replay"));
      setTimeout(() => location.assign(link.href), REPLAY_OPEN_MS);
      return;
    }
    status(tr("status.preparing_replay"));
    setTimeout(check, REPLAY_POLL_MS);
  };
  check();
}

unmute.addEventListener("click", () => {
  video.muted = false;
  tryPlay();
  unmute.hidden = true;
});
playBtn.addEventListener("click", tryPlay);

function showViewers(n) {
  $("viewers").textContent = typeof n === "number" ? tr("watch.viewers", { n }) : "";
}

async function refreshInfo() {
  let info;
  try {
    info = await followedInfo(bid, player, () => chat.state !== "stopped" && chat.restart());
  } catch (err) {
    if (err.status === 404) {
      chat.stop();
      finish(tr("status.not_found"), "error");
    }
    return;
  }
  if (!info) return;
  if (Array.isArray(info.nodes)) nodeUrls = info.nodes;
  if (Array.isArray(info.renditions)) showRenditions(info.renditions);
  $("title").textContent = info.title || tr("watch.title");
  document.title = `${info.title || tr("watch.title")} · ${tr("watch.title")}`;
  if (info.orientation) document.body.dataset.orientation = info.orientation;
  showStatus(info.status);
  if (info.status !== "ended") showViewers(info.viewers);
}

function showRenditions(list) {
  renditions = list;
  saverBtn.hidden = over || renditions.length < 2;
  saverBtn.setAttribute("aria-pressed", String(saverOn));
  // the session was made before we knew the ladder (or it changed): ask for the right rung now
  if (player.state === "connected" && requested !== null && requested !== wantedRendition()) {
    reconnectForRendition();
  }
}

/** Start a new session for the rung now wanted, through the player's own connect code. */
async function reconnectForRendition() {
  if (switching || over) return;
  const live = player.state === "connecting" || player.state === "connected" || player.state === "reconnecting";
  if (!live) return; // waiting, or not started yet: its next connect asks for the right rung
  switching = true;
  try {
    await player.stop(); // the DELETE first: the old session must not hold our place
    if (!over && player.state === "stopped") player.start();
  } finally {
    switching = false;
  }
}

saverBtn.addEventListener("click", () => {
  saverOn = !saverOn;
  store(SAVER_KEY, saverOn ? "1" : "0");
  saverBtn.setAttribute("aria-pressed", String(saverOn));
  if (requested !== wantedRendition()) reconnectForRendition();
  if (!statsEl.hidden) renderStats();
});

// -- playback stats: a long press on the picture (or the "i" key) shows them ---------------------
const LONG_PRESS_MS = 600;
let pressTimer = null;
let pressFrom = null; // where the press started: moving away (a scroll) cancels it
let statsTimer = null;
let lastFrames = null; // {frames, at}: the decoded-frame count the rate is measured from

function showStats(on) {
  statsEl.hidden = !on;
  clearInterval(statsTimer);
  lastFrames = null;
  if (on) {
    renderStats();
    statsTimer = setInterval(renderStats, 1000);
  }
}

function bitrateText(bps) {
  if (!bps) return "—";
  return bps >= 1e6 ? `${+(bps / 1e6).toFixed(1)} Mbps` : `${Math.round(bps / 1000)} kbps`;
}

/** The rung the decoded picture's size belongs to. */
function currentRendition(w, hgt) {
  return renditions.find((r) => r.width === w && r.height === hgt)
    || renditions.find((r) => Math.min(r.width, r.height) === Math.min(w, hgt)) || null;
}

/** Frames per second: the browser's own figure (getStats), else counted from decoded frames. */
async function decodedFps() {
  let fps = null, frames = null;
  const pc = player.pc;
  if (pc) {
    try {
      (await pc.getStats()).forEach((s) => {
        if (s.type !== "inbound-rtp" || s.kind !== "video") return;
        if (typeof s.framesPerSecond === "number") fps = s.framesPerSecond;
        if (typeof s.framesDecoded === "number") frames = s.framesDecoded;
      });
    } catch (_) {
      /* closing */
    }
  }
  if (fps !== null) return fps;
  if (frames === null) {
    const q = video.getVideoPlaybackQuality?.();
    if (q) frames = q.totalVideoFrames - q.droppedVideoFrames;
  }
  if (frames === null) return null;
  const now = performance.now(), prev = lastFrames;
  lastFrames = { frames, at: now };
  if (!prev || frames < prev.frames || now - prev.at < 200) return null;
  return ((frames - prev.frames) * 1000) / (now - prev.at);
}

async function renderStats() {
  const w = video.videoWidth, hgt = video.videoHeight;
  const r = w && hgt ? currentRendition(w, hgt) : null;
  $("st-rendition").textContent = !w || !hgt ? "—" : r ? `${r.name} · ${w}×${hgt}` : `${w}×${hgt}`;
  $("st-bitrate").textContent = bitrateText(r?.bitrate);
  $("st-mode").textContent = requested ? tr("stats.saver") : tr("stats.auto");
  const fps = await decodedFps();
  if (statsEl.hidden) return;
  $("st-fps").textContent = fps === null ? "—" : `${Math.round(fps)} fps`;
}

function cancelPress() {
  clearTimeout(pressTimer);
  pressTimer = null;
  pressFrom = null;
}

video.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) return; // left button, a finger or a pen
  cancelPress();
  pressFrom = { x: e.clientX, y: e.clientY };
  pressTimer = setTimeout(() => {
    pressTimer = null;
    pressFrom = null;
    showStats(statsEl.hidden);
  }, LONG_PRESS_MS);
});
video.addEventListener("pointermove", (e) => {
  if (pressFrom && Math.hypot(e.clientX - pressFrom.x, e.clientY - pressFrom.y) > 12) cancelPress();
});
for (const type of ["pointerup", "pointercancel", "pointerleave"]) video.addEventListener(type, cancelPress);
// a finger held on the picture opens the browser's menu first: not while we time a long press
video.addEventListener("contextmenu", (e) => {
  if (pressTimer) e.preventDefault();
});
statsEl.addEventListener("click", () => showStats(false));
addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  if (e.key !== "i" && e.key !== "I" && e.code !== "KeyI") return;
  const el = e.target;
  if (el instanceof Element && el.closest("input, textarea, select, [contenteditable], dialog")) return;
  if (buyer.isOpen) return;
  showStats(statsEl.hidden);
});

function showStatus(s) {
  badge.dataset.status = s;
  badge.textContent = s === "live" ? "LIVE" : s === "ended" ? tr("status.ended") : tr("status.scheduled");
  if (s === "ended" && !over) ended();
  if (s === "live" && player.state === "waiting") player.kick(); // on air now: play
}

// -- the pinned product --------------------------------------------------------------------------
const shop = new Shop(bid, () => renderProduct());
let current = null; // the pinned product as last drawn
let dealEndedSeen = null; // "pid@ends_at" of a deal the server said has ended

function stockText(n) {
  return n > 0 ? tr("product.left", { n }) : tr("product.sold_out");
}

function renderProduct() {
  const p = shop.pinned();
  current = p;
  $("product").hidden = !p;
  if (!p) return;
  $("p-name").textContent = p.name;
  const thumb = $("p-thumb");
  thumb.replaceChildren(p.image ? h("img", { src: p.image, alt: "" }) : (p.name.trim()[0] || "?"));
  const { price: now, ended } = priceNow(p);
  // the server's word wins over this device's clock
  const dealOver = ended || (p.deal && dealEndedSeen === `${p.id}@${p.deal.ends_at}`);
  $("p-deal").hidden = !p.deal || dealOver;
  $("p-price").textContent = price(now);
  const was = Math.max(p.list_price || 0, p.deal ? p.price : 0);
  $("p-list").textContent = was > now ? won(was) : "";
  const stock = $("p-stock");
  stock.textContent = stockText(p.stock);
  stock.dataset.low = p.stock <= 5 ? "1" : "0";
  $("p-limit").textContent = p.per_buyer_limit
    ? tr("product.limit", { n: p.per_buyer_limit }) : "";
  const timed = p.deal && p.deal.ends_at;
  $("p-timer").hidden = !timed || dealOver;
  if (timed) $("p-countdown").textContent = clock(p.deal.ends_at - Date.now());
  const buy = $("buy"), msg = $("buy-msg");
  buy.disabled = over || p.stock <= 0 || dealOver;
  if (over) msg.textContent = tr("product.ended");
  else if (p.stock <= 0) msg.textContent = tr("err.sold_out");
  else if (dealOver) msg.textContent = tr("err.deal_ended");
  else msg.textContent = "";
  msg.dataset.kind = buy.disabled ? "error" : "";
  buyer.refresh();
}

setInterval(() => {
  if (current?.deal?.ends_at) renderProduct(); // the countdown, and the moment the deal ends
}, 1000);

// -- buying (buy.js: the order dialog and "my orders") --------------------------------------------
const buyer = new BuyFlow({
  bid,
  getToken,
  // the product as it is now, with the pinned deal when it is the one pinned
  product(id) {
    const p = shop.products.get(id);
    return p ? { ...p, deal: current && current.id === p.id ? current.deal : null } : null;
  },
  onRefused(err, product) {
    if (err.code === "deal_ended" && product.deal) dealEndedSeen = `${product.id}@${product.deal.ends_at}`;
    renderProduct();
  },
});
$("buy").addEventListener("click", () => buyer.open(current));

// -- chat ----------------------------------------------------------------------------------------
const log = $("chat-log"), input = $("chat-input"), chatState = $("chat-state");
const MAX_LINES = 200;
let settings = { slow_mode_s: 0, frozen: false };
const form = new ChatForm(input, () => chat, () => tr("chat.not_connected"), showChatState);

function nearBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 60;
}

function addLine(li) {
  const stick = nearBottom();
  log.append(li);
  while (log.children.length > MAX_LINES) log.firstElementChild.remove();
  if (stick) log.scrollTop = log.scrollHeight;
}

function chatLine(e) {
  const mine = me && e.user?.id === me.userId;
  const role = e.user?.role;
  const roleName = role === "host" || role === "cohost" || role === "moderator" ? tr(`role.${role}`) : null;
  return h("li", { dataset: { id: e.id, user: e.user?.id || "" }, class: mine ? "mine" : null },
    h("span", { class: "who", dataset: { role: role || "" } }, e.user?.name || "?"),
    roleName ? h("span", { class: "role" }, roleName) : null,
    h("span", { class: "text" }, e.text));
}

function productName(pid) {
  return shop.products.get(pid)?.name || pid;
}

function showChatState() {
  if (form.refusal) {
    chatState.textContent = form.refusal;
    chatState.dataset.kind = "error";
    return;
  }
  chatState.dataset.kind = "";
  if (chat.state === "connecting") chatState.textContent = tr("chat.connecting");
  else if (chat.state === "reconnecting") chatState.textContent = tr("chat.reconnecting");
  else if (settings.frozen) chatState.textContent = tr("chat.frozen");
  else if (settings.slow_mode_s) chatState.textContent = tr("chat.slow", { s: settings.slow_mode_s });
  else chatState.textContent = "";
  const staff = me && me.role !== "viewer";
  input.disabled = $("send").disabled = settings.frozen && !staff;
}

function onEvent(e) {
  if (shop.handle(e) || showChatEvent(e, log, addLine, chatLine)) return;
  switch (e.type) {
    case "system":
      addLine(h("li", { class: "system", dataset: { id: e.id || "" } }, e.text));
      break;
    case "order":
      addLine(h("li", { class: "order-line", dataset: { id: e.id || "" } },
        tr("chat.ordered", { name: e.buyer_name_masked, product: productName(e.product_id), n: e.qty })));
      break;
    case "order_status":
      buyer.orderStatus(e);
      break;
    case "order_pending": // a chat line like "구매 2" reserved this: confirm it in one tap
      buyer.addOrder(e.order, viewerToken.token);
      buyer.showConfirm(e.order.id);
      break;
    case "hearts":
      $("hearts-total").textContent = `♥ ${Number(e.total).toLocaleString(currentLang())}`;
      break;
    case "viewers":
      if (!over) showViewers(e.count);
      break;
    case "settings":
      settings = { slow_mode_s: e.slow_mode_s, frozen: e.frozen };
      showChatState();
      break;
    case "status":
      showStatus(e.status);
      break;
    case "reset": // our place left the server's history: fresh history follows; reload the shop
      log.replaceChildren();
      shop.load().catch(() => {});
      break;
    case "error":
      form.refused(e);
      break;
    default:
      break;
  }
}

const chat = new ChatSocket({
  bid,
  getToken: async (refresh) => {
    const { token } = viewerToken;
    if (refresh && token && me?.role !== "viewer") return token; // a named token: keep it
    return getToken(refresh);
  },
  onEvent,
  onState: (state) => {
    if (state === "open") $("announcement").hidden = true; // the greeting repeats it if still set
    showChatState();
  },
});

// hearts: taps are counted locally and sent at most every 250 ms
let taps = 0;
$("heart").addEventListener("click", () => {
  taps++;
  const heart = h("span", { class: "floating", "aria-hidden": "true" }, "♥");
  $("stage").append(heart);
  setTimeout(() => heart.remove(), 1200);
});
setInterval(() => {
  if (taps && chat.send({ type: "heart", count: Math.min(taps, 50) })) taps = 0;
}, 250);

// -- language and currency -----------------------------------------------------------------------
const langSel = $("lang"), currencySel = $("currency");

function fillLanguageAndCurrency() {
  langSel.replaceChildren(...LANGS.map((l) => h("option", { value: l }, LANG_NAMES[l])));
  langSel.value = currentLang();
  const offered = offeredCurrencies();
  currencySel.hidden = !offered.length;
  currencySel.replaceChildren(h("option", { value: "" }, "₩ KRW"),
    ...offered.map((c) => h("option", { value: c }, c)));
  currencySel.value = currentCurrency() || "";
}

/** Everything drawn with words or prices, again (a new language or currency). */
function redraw() {
  fillLanguageAndCurrency();
  refreshInfo();
  renderProduct();
  buyer.render();
  showChatState();
  if (!statsEl.hidden) renderStats();
}

langSel.addEventListener("change", async () => {
  await setLang(langSel.value);
  redraw();
});
currencySel.addEventListener("change", () => {
  setCurrency(currencySel.value);
  redraw();
});
$("my-orders").addEventListener("click", () => $("orders-dialog").showModal());
$("orders-close").addEventListener("click", () => $("orders-dialog").close());

// -- start ---------------------------------------------------------------------------------------
await Promise.all([useLang(), useCurrency()]); // the words and the rates before anything is drawn
fillLanguageAndCurrency();
status(tr("status.starting"));
infoTimer = setInterval(refreshInfo, 10000);
const firstInfo = refreshInfo();
if (bid) {
  // the data saver names a rung: learn the ladder first (on a failure: auto, corrected later)
  if (saverOn) firstInfo.finally(() => { if (!over && player.state === "idle") player.start(); });
  else player.start();
  shop.load().catch(() => {});
  chat.start();
  buyer.load();
} else status(tr("status.no_id"), "error");

// Leave cleanly: the DELETE outlives the page (keepalive).
addEventListener("pagehide", () => player.stop({ keepalive: true }));
// Back/forward cache: a restored page starts a fresh session (unless playback was over).
addEventListener("pageshow", (e) => {
  if (e.persisted && player.state === "stopped" && $("notice").hidden) player.start();
});

// Hooks for tests and debugging.
window.jt = {
  bid,
  player,
  chat,
  shop,
  orders: buyer.orders,
  buyer,
  get state() { return player.state; },
  get home() { return homeOrigin(); },
  get nodes() { return nodeUrls; },
  get me() { return me; },
  stats: () => player.stats(),
  refreshInfo,
  get lang() { return currentLang(); },
  get currency() { return currentCurrency(); },
  get renditions() { return renditions; },
  get rendition() { return requested; },
  get dataSaver() { return saverOn; },
  showStats,
};
