import {
  MediaSession, broadcastId, followedInfo, homeOrigin, pageToken, sendableVideoCodecs,
} from "/static/whip-whep.js";
import {
  ChatForm, ChatSocket, Shop, api, claimsOf, clock, explain, h, priceNow, showChatEvent, t, timeOf,
  won,
} from "/static/live.js";
import { RestreamPanel } from "/static/restream.js";
import { NumbersPanel } from "/static/numbers.js";
import { useLang } from "/static/i18n.js";

const bid = broadcastId();
const B = `/api/broadcasts/${encodeURIComponent(bid)}`;
const wantCohost = new URLSearchParams(location.search).get("role") === "cohost";
const token = pageToken(bid, wantCohost ? "cohost" : "studio");
const me = token ? claimsOf(token) : null;
const role = me?.role || (wantCohost ? "cohost" : "host");
const isHost = role === "host";
const canModerate = role === "host" || role === "moderator";
const $ = (id) => document.getElementById(id);
// the controls are buttons and a <select>: never a form to send (no inline handler: the CSP)
$("controls").addEventListener("submit", (e) => e.preventDefault());
const camera = $("camera"), output = $("output"), codecSel = $("codec");
const goLive = $("golive"), endBtn = $("end"), retryCam = $("retry-camera");
const statusEl = $("status"), badge = $("badge");
let stream = null;
let publisher = null;
let canPin = isHost;
let orientation = "landscape";
let facing = "user"; // the phone's front camera first; the flip button turns to the back one
let startedAt = null;
const phone = matchMedia("(max-width: 760px), (max-height: 500px)");

function status(text, kind = "") {
  statusEl.textContent = text;
  statusEl.dataset.kind = kind;
}

function say(el, text, kind = "") {
  const node = typeof el === "string" ? $(el) : el;
  node.textContent = text;
  node.dataset.kind = kind;
}

// What this role sees: the host everything; a co-host camera, chat, and pins if allowed.
$("role").textContent = { host: t("호스트", "Host"), cohost: t("공동 진행자", "Co-host"),
  moderator: t("매니저", "Moderator") }[role] || role;
for (const el of document.querySelectorAll("[data-host-only]")) el.hidden = !isHost;
for (const el of document.querySelectorAll("[data-mod-only]")) el.hidden = !canModerate;
if (role === "moderator") for (const id of ["golive", "end", "codec"]) $(id).disabled = true;

function applyPinRights() {
  for (const el of document.querySelectorAll("[data-pinner]")) el.hidden = !canPin;
  $("pin-note").hidden = canPin;
  renderProducts();
}

// -- camera and going live -----------------------------------------------------------------------
const sendable = sendableVideoCodecs().map((m) => m.toLowerCase());
if (sendable.length) {
  for (const opt of codecSel.options) opt.disabled = !sendable.includes(opt.value.toLowerCase());
}

function videoWanted() {
  // the broadcast's shape; the server cuts a camera of the other shape to cover, never squeezes it
  const [w, h] = orientation === "portrait" ? [720, 1280] : [1280, 720];
  return { width: { ideal: w }, height: { ideal: h }, frameRate: { ideal: 30 }, facingMode: facing };
}

async function startCamera() {
  retryCam.hidden = true;
  status(t("카메라 준비 중…", "Starting camera…"));
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: videoWanted(),
      audio: { echoCancellation: true, noiseSuppression: true },
    });
  } catch (err) {
    status(t("카메라/마이크를 사용할 수 없습니다", "Camera or microphone unavailable") +
      ` (${err.name})`, "error");
    retryCam.hidden = false;
    return;
  }
  camera.srcObject = stream;
  goLive.disabled = !token || role === "moderator";
  $("flip").hidden = false;
  status(t("준비 완료", "Ready"));
}

// The phone's other camera (the merchant shows the goods, then their face): the new track
// replaces the old one in the running session, so viewers see no gap.
async function flipCamera() {
  if (!stream) return;
  const was = facing;
  facing = facing === "user" ? "environment" : "user";
  try {
    const fresh = await navigator.mediaDevices.getUserMedia({ video: videoWanted() });
    const [track] = fresh.getVideoTracks();
    const old = stream.getVideoTracks()[0];
    await publisher?.replaceTrack(track);
    if (old) {
      stream.removeTrack(old);
      old.stop();
    }
    stream.addTrack(track);
    camera.srcObject = stream;
    camera.style.transform = facing === "user" ? "" : "none"; // mirror the selfie view only
  } catch (err) {
    facing = was;
    status(t("카메라를 바꿀 수 없습니다", "Cannot switch the camera") + ` (${err.name})`, "error");
  }
}
$("flip").addEventListener("click", flipCamera);

// The screen stays on while we send (a phone would dim and lock in the middle of the show).
let wakeLock = null;
async function stayAwake(on) {
  if (!on) {
    const held = wakeLock;
    wakeLock = null;
    await held?.release().catch(() => {});
    return;
  }
  if (wakeLock || !("wakeLock" in navigator)) return;
  try {
    wakeLock = await navigator.wakeLock.request("screen");
    wakeLock.addEventListener?.("release", () => { wakeLock = null; });
  } catch (_) {
    wakeLock = null; // refused (battery saver, a hidden tab): the show goes on anyway
  }
}
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && publisher) stayAwake(true); // the OS let it go
});

function sending(on) {
  if (on) document.body.dataset.sending = "1";
  else delete document.body.dataset.sending;
  stayAwake(on);
}

function setLiveUi(live) {
  goLive.disabled = live || !stream;
  endBtn.disabled = !live;
  codecSel.disabled = live;
  sending(live);
}

goLive.addEventListener("click", () => {
  if (!stream || publisher) return;
  setLiveUi(true);
  publisher = new MediaSession({
    kind: "whip",
    url: new URL(`/whip/${encodeURIComponent(bid)}`, location.href).href,
    getToken: async () => token,
    tracks: stream.getTracks(),
    videoCodec: codecSel.value,
    nodes: () => nodeUrls,
    onState(state, detail) {
      if (state === "connecting") status(t("연결 중…", "Connecting…"));
      else if (state === "connected") {
        status(t("방송 중", "Live"), "ok");
        refreshInfo();
      } else if (state === "reconnecting") status(t("다시 연결 중…", "Reconnecting…"));
      else if (state === "failed") {
        const why = detail?.code === "host_live"
          ? t("다른 기기에서 이미 방송 중입니다", "Another device is already live")
          : detail?.code === "broadcast_ended"
            ? t("이미 종료된 방송입니다", "This broadcast has ended")
            : t("방송을 시작할 수 없습니다", "Cannot go live") + ` (${detail?.message || ""})`;
        status(why, "error");
        publisher = null;
        setLiveUi(false);
      }
    },
  });
  publisher.start();
});

endBtn.addEventListener("click", async () => {
  if (!publisher) return;
  const p = publisher;
  publisher = null;
  endBtn.disabled = true;
  await p.stop();
  setLiveUi(false);
  status(t("송출을 멈췄습니다", "Stopped sending"));
});

retryCam.addEventListener("click", startCamera);

// Finish the broadcast for everyone: two steps, so one stray tap does not end the show.
function finishStep(asking) {
  if (asking) $("controls").dataset.asking = "1";
  else delete $("controls").dataset.asking;
  $("finish").hidden = asking;
  $("finish-confirm").hidden = !asking;
  $("finish-cancel").hidden = !asking;
  (asking ? $("finish-cancel") : $("finish")).focus();
}
$("finish").addEventListener("click", () => finishStep(true));
$("finish-cancel").addEventListener("click", () => finishStep(false));
$("finish-confirm").addEventListener("click", async () => {
  try {
    await api(`${B}/end`, { method: "POST", token });
    publisher?.stop({ ended: true }); // the end closed every session of the show
    publisher = null;
    setLiveUi(false);
    goLive.disabled = true;
    status(t("방송을 마쳤습니다", "The broadcast is finished"), "ok");
  } catch (err) {
    status(explain(err), "error");
  }
  $("finish-confirm").hidden = $("finish-cancel").hidden = true;
  delete $("controls").dataset.asking;
  refreshInfo();
});

// the deployment's nodes (GET /api/broadcasts/{bid} `nodes`): where the camera and the preview
// go when their node is drained or stops
let nodeUrls = [];

// What viewers see: the composed output, played over WHEP with our own token.
const preview = new MediaSession({
  kind: "whep",
  url: new URL(`/whep/${encodeURIComponent(bid)}`, location.href).href,
  getToken: async () => token,
  nodes: () => nodeUrls, // a drained or dead node: what viewers see, from the next one
  onStream(s) {
    if (output.srcObject !== s) output.srcObject = s;
    output.play().catch(() => {});
  },
});

function showStatus(s) {
  if (s === "live") document.body.dataset.onAir = "1";
  else delete document.body.dataset.onAir;
  badge.dataset.status = s;
  badge.textContent = s === "live" ? "LIVE" : s === "ended" ? t("종료", "Ended") : t("대기 중", "Scheduled");
  if (s === "ended") {
    goLive.disabled = true;
    $("finish").hidden = true;
    if (preview.state !== "idle" && preview.state !== "stopped") preview.stop({ ended: true });
  }
  // What viewers see plays once the show is on air (before that there is nothing to watch).
  if (s === "live" && token) {
    if (preview.state === "idle" || preview.state === "failed") preview.start();
    else if (preview.state === "waiting") preview.kick();
  }
}

function showViewers(n) {
  const el = $("viewers");
  if (typeof n !== "number") return el.replaceChildren();
  // a phone's header has room for the number only; the words stay for screen readers
  el.replaceChildren(h("span", { class: "long" }, t(`시청 ${n}명`, `${n} watching`)),
    h("span", { class: "short", "aria-hidden": "true" }, `시청 ${n.toLocaleString("ko-KR")}`));
}

async function refreshInfo() {
  try {
    const info = await followedInfo(bid, publisher, () => chat.restart());
    if (!info) return;
    $("title").textContent = info.title || t("장터 스튜디오", "Jangteo Studio");
    document.title = `${info.title || "장터 스튜디오"} · Jangteo Studio`;
    if (Array.isArray(info.nodes)) nodeUrls = info.nodes;
    orientation = info.orientation || "landscape";
    numbers?.forecastFor(info.merchant_id);
    document.body.dataset.orientation = orientation;
    startedAt = info.status === "live" ? info.started_at : null;
    showElapsed();
    showStatus(info.status);
    showViewers(info.viewers);
  } catch (_) {
    /* shown by the sessions */
  }
}

// How long the show has been live (from the server's start time).
function showElapsed() {
  const el = $("elapsed");
  el.hidden = !startedAt;
  if (startedAt) el.textContent = clock(Math.max(0, Date.now() - startedAt));
}
setInterval(showElapsed, 1000);

// -- the phone's sheet: one part at a time over the picture --------------------------------------
const SHEETS = {
  products: [t("상품", "Products"), "products-panel"],
  flash: [t("깜짝 상품", "Flash product"), "fl-name"],
  more: [t("더 보기", "More"), "orders-panel"],
};
let sheetOpener = null;

function openSheet(name, opener = null) {
  const [title, focus] = SHEETS[name];
  document.body.dataset.sheet = name;
  $("sheet-title").textContent = title;
  $("sheet").scrollTop = 0;
  sheetOpener = opener;
  const target = $(focus);
  if (target.matches("input")) target.focus();
  else $("sheet-close").focus();
}

function closeSheet() {
  if (!document.body.dataset.sheet) return;
  delete document.body.dataset.sheet;
  sheetOpener?.focus();
  sheetOpener = null;
}
for (const btn of document.querySelectorAll("button[data-sheet]")) {
  btn.addEventListener("click", () => openSheet(btn.dataset.sheet, btn));
}
$("sheet-close").addEventListener("click", closeSheet);
addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && document.body.dataset.sheet) closeSheet();
});
// a tap on the picture (outside the sheet) closes it
$("output").addEventListener("click", closeSheet);
$("camera").addEventListener("click", closeSheet);
const closeOnPhone = () => { if (phone.matches) closeSheet(); };

// Order toasts over the picture (a phone has no room for the feed while live).
function toast(text) {
  const box = $("toasts");
  const el = h("div", { class: "toast" }, text);
  box.append(el);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => el.remove(), 5000);
}

// -- products and the pin ------------------------------------------------------------------------
const shop = new Shop(bid, () => renderProducts());

function stockText(n) {
  return n > 0 ? t(`남은 수량 ${n}개`, `${n} left`) : t("품절", "Sold out");
}

function renderProducts() {
  const pinned = shop.pinned();
  $("pinned-box").hidden = !pinned;
  if (pinned) {
    $("pinned-name").textContent = pinned.name;
    const { price, ended } = priceNow(pinned);
    $("pinned-price").textContent = won(price);
    $("pinned-stock").textContent = stockText(pinned.stock);
    $("pinned-deal").hidden = !pinned.deal;
    $("pinned-countdown").textContent = !pinned.deal ? ""
      : ended ? t("끝남", "ended")
        : pinned.deal.ends_at ? clock(pinned.deal.ends_at - Date.now()) : t("시간 제한 없음", "no time limit");
  }
  const list = $("product-list");
  const products = shop.list();
  list.replaceChildren(...products.map((p) => {
    const isPinned = pinned && pinned.id === p.id;
    const opts = p.options?.length
      ? p.options.map((o) => `${o.name} ${o.stock}`).join(" · ") : null;
    return h("li", { dataset: { id: p.id, pinned: isPinned ? "1" : "0" } },
      h("div", { class: "grow" },
        h("div", { class: "name" }, p.name),
        h("span", { class: "meta" }, won(p.price)), " ",
        h("span", { class: "stock", dataset: { stock: p.stock, low: p.stock <= 5 ? "1" : "0" } }, stockText(p.stock)),
        opts ? h("div", { class: "meta" }, opts) : null),
      isPinned ? h("span", { class: "status-pill", dataset: { status: "paid" } }, t("고정됨", "Pinned"))
        : canPin ? h("button", { type: "button", class: "small", onclick: () => pin(p),
          dataset: { action: "pin", productId: p.id },
          "aria-label": `${t("고정", "Pin")}: ${p.name}` }, t("고정", "Pin")) : null);
  }));
  if (!products.length) list.append(h("li", { class: "meta" }, t("아직 상품이 없습니다", "No products yet")));
}

setInterval(() => {
  if (shop.pinned()?.deal?.ends_at) renderProducts();
}, 1000);

async function pin(product) {
  const body = { product_id: product.id };
  const dealPrice = $("deal-price").value.trim();
  if (dealPrice !== "") {
    body.deal_price = Number(dealPrice);
    const minutes = Number($("deal-minutes").value);
    if (minutes > 0) body.deal_ends_at = Date.now() + minutes * 60_000;
  }
  try {
    await api(`${B}/pin`, { method: "POST", token, body });
    say("products-msg", t(`${product.name} 고정됨`, `${product.name} pinned`), "ok");
    $("deal-price").value = "";
    closeOnPhone(); // back to the picture, with the product on it
  } catch (err) {
    say("products-msg", explain(err), "error");
  }
}

$("unpin").addEventListener("click", async () => {
  try {
    await api(`${B}/pin`, { method: "DELETE", token });
    say("products-msg", t("고정을 해제했습니다", "Unpinned"), "ok");
  } catch (err) {
    say("products-msg", explain(err), "error");
  }
});

const num = (id) => {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
};

function parseOptions(text) {
  const parts = text.split(",").map((s) => s.trim()).filter(Boolean);
  return parts.map((part, i) => {
    const [name, stock] = part.split(":").map((s) => s.trim());
    return { id: `o${i + 1}`, name, stock: Number(stock) || 0 };
  });
}

$("add-product").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { name: $("np-name").value.trim(), price: num("np-price"), stock: num("np-stock") ?? 0 };
  if (num("np-list") !== undefined) body.list_price = num("np-list");
  if (num("np-limit") !== undefined) body.per_buyer_limit = num("np-limit");
  const options = parseOptions($("np-options").value);
  if (options.length) body.options = options;
  const pid = `p${Date.now().toString(36)}`;
  try {
    await api(`${B}/products/${pid}`, { method: "PUT", token, body });
    say("products-msg", t(`${body.name} 추가됨`, `${body.name} added`), "ok");
    ev.target.reset();
  } catch (err) {
    say("products-msg", explain(err), "error");
  }
});

$("flash").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { name: $("fl-name").value.trim(), price: num("fl-price"), stock: num("fl-stock") ?? 0 };
  try {
    const product = await api(`${B}/products/snapshot`, { method: "POST", token, body });
    const listed = t(`깜짝 상품 ${product.name} 등록`, `Flash product ${product.name} listed`);
    say("flash-msg", listed, "ok");
    say("products-msg", listed, "ok");
    if ($("fl-pin").checked) await pin(product);
    ev.target.reset();
    $("fl-pin").checked = true;
    closeOnPhone();
  } catch (err) {
    say("flash-msg", explain(err), "error");
  }
});

// -- orders --------------------------------------------------------------------------------------
const ORDER_STATUS = {
  reserved: t("결제 대기", "Awaiting payment"), paid: t("결제 완료", "Paid"),
  cancelled: t("취소", "Cancelled"), expired: t("만료", "Expired"),
};
let ordersTimer = null;

async function refreshOrders() {
  if (!isHost) return;
  let doc;
  try {
    doc = await api(`${B}/orders`, { token });
  } catch (err) {
    say("orders-msg", explain(err), "error");
    return;
  }
  say("orders-msg", "");
  const orders = doc.orders.sort((a, b) => b.created_at - a.created_at);
  const paid = orders.filter((o) => o.status === "paid");
  $("order-sums").replaceChildren(
    h("span", {}, t("주문 ", "Orders "), h("strong", {}, String(orders.length))),
    h("span", {}, t("결제 완료 ", "Paid "), h("strong", {}, String(paid.length))),
    h("span", {}, t("매출 ", "Revenue "), h("strong", {}, won(paid.reduce((s, o) => s + o.total, 0)))));
  $("order-feed").replaceChildren(...orders.slice(0, 200).map((o) => h("li", { dataset: { id: o.id, status: o.status } },
    h("time", { datetime: new Date(o.created_at).toISOString() }, timeOf(o.created_at)),
    h("span", { class: "grow" },
      h("strong", {}, o.buyer?.name || "?"), " · ",
      `${o.shown?.name || o.product_id}${o.option ? ` (${o.option})` : ""} × ${o.qty} · ${won(o.total)}`),
    h("span", { class: "status-pill", dataset: { status: o.status } }, ORDER_STATUS[o.status] || o.status))));
  if (!orders.length) $("order-feed").append(h("li", { class: "meta" }, t("아직 주문이 없습니다", "No orders yet")));
}

function ordersSoon() {
  clearTimeout(ordersTimer);
  ordersTimer = setTimeout(refreshOrders, 150);
}

$("csv").addEventListener("click", async () => {
  try {
    const resp = await fetch(`${B}/orders?format=csv`, { headers: { Authorization: `Bearer ${token}` } });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const url = URL.createObjectURL(await resp.blob());
    const a = h("a", { href: url, download: `orders-${bid}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    say("orders-msg", explain(err), "error");
  }
});

// -- chat and moderation -------------------------------------------------------------------------
const log = $("chat-log"), input = $("chat-input");
const MAX_LINES = 300;
const form = new ChatForm(input, () => chat, () => t("채팅이 연결되지 않았습니다", "Chat is not connected"),
  showChatState);
let settings = { slow_mode_s: 0, frozen: false };

function addLine(li) {
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
  log.append(li);
  while (log.children.length > MAX_LINES) log.firstElementChild.remove();
  if (stick) log.scrollTop = log.scrollHeight;
}

async function moderate(what, e) {
  const name = e.user?.name || "?";
  try {
    if (what === "delete") {
      await api(`${B}/chat/${encodeURIComponent(e.id)}`, { method: "DELETE", token });
      say("mod-msg", t("메시지를 삭제했습니다", "Message deleted"), "ok");
    } else {
      await api(`${B}/bans`, { method: "POST", token, body: { user_id: e.user.id, duration_s: 300 } });
      say("mod-msg", t(`${name}님 5분 채팅 제한`, `${name} timed out for 5 minutes`), "ok");
    }
  } catch (err) {
    say("mod-msg", explain(err), "error");
  }
}

function chatLine(e) {
  const r = e.user?.role;
  const roleName = r === "host" ? t("판매자", "Host") : r === "cohost" ? t("공동 진행", "Co-host")
    : r === "moderator" ? t("매니저", "Mod") : null;
  const name = e.user?.name || "?";
  const others = canModerate && e.user && e.user.id !== me?.userId && r !== "host";
  const open = (ev) => {
    if (!others || ev.target.closest("button")) return;
    const li = ev.currentTarget;
    const was = li.dataset.open;
    for (const other of log.querySelectorAll("li[data-open]")) delete other.dataset.open;
    if (!was) li.dataset.open = "1";
  };
  return h("li", { dataset: { id: e.id, user: e.user?.id || "" }, onclick: open },
    h("span", { class: "who", dataset: { role: r || "" } }, name),
    roleName ? h("span", { class: "role" }, roleName) : null,
    h("span", { class: "text" }, e.text),
    others ? h("span", { class: "mod" },
      h("button", { type: "button", class: "small", onclick: () => moderate("delete", e),
        dataset: { action: "delete-message" },
        "aria-label": `${t("삭제", "Delete")}: ${name}` }, t("삭제", "Delete")),
      h("button", { type: "button", class: "small", onclick: () => moderate("timeout", e),
        dataset: { action: "timeout" },
        "aria-label": `${t("5분 제한", "Time out")}: ${name}` }, t("5분 제한", "Time out"))) : null);
}

function showChatState() {
  const el = $("chat-state");
  if (form.refusal) return say(el, form.refusal, "error");
  if (chat.state === "connecting") say(el, t("채팅 연결 중…", "Connecting chat…"));
  else if (chat.state === "reconnecting") say(el, t("채팅 다시 연결 중…", "Reconnecting chat…"));
  else if (settings.frozen) say(el, t("채팅이 얼어 있습니다 (진행자는 보낼 수 있어요)", "Chat is frozen (hosts can still send)"));
  else if (settings.slow_mode_s) say(el, t(`슬로 모드 ${settings.slow_mode_s}초`, `Slow mode ${settings.slow_mode_s} s`));
  else say(el, "");
}

function onEvent(e) {
  if (shop.handle(e) || showChatEvent(e, log, addLine, chatLine)) return;
  switch (e.type) {
    case "system":
      addLine(h("li", { class: "system" }, e.text));
      break;
    case "order":
      addLine(h("li", { class: "order-line" },
        t(`${e.buyer_name_masked}님 ${shop.products.get(e.product_id)?.name || e.product_id} ${e.qty}개 주문`,
          `${e.buyer_name_masked} ordered ${e.qty}`)));
      toast(t(`${e.buyer_name_masked}님 ${shop.products.get(e.product_id)?.name || e.product_id} ${e.qty}개`,
        `${e.buyer_name_masked}: ${e.qty} × ${shop.products.get(e.product_id)?.name || e.product_id}`));
      ordersSoon();
      break;
    case "session_replaced": // this identity went live elsewhere (another tab or device)
      if (e.kind === "whip" && publisher?.sessionUrl?.endsWith(`/${e.session}`)) {
        publisher.stop({ ended: true }); // replaced there: nothing to delete, no taking it back
        publisher = null;
        setLiveUi(false);
        status(t("다른 기기에서 방송을 이어갑니다", "Live continues on another device"), "error");
      }
      break;
    case "hearts":
      $("hearts-total").textContent = `♥ ${Number(e.total).toLocaleString("ko-KR")}`;
      break;
    case "viewers":
      showViewers(e.count);
      break;
    case "settings":
      settings = { slow_mode_s: e.slow_mode_s, frozen: e.frozen };
      $("freeze").checked = e.frozen;
      if (![...$("slow").options].some((o) => Number(o.value) === e.slow_mode_s)) {
        $("slow").append(h("option", { value: String(e.slow_mode_s) }, t(`${e.slow_mode_s}초`, `${e.slow_mode_s} s`)));
      }
      $("slow").value = String(e.slow_mode_s);
      showChatState();
      break;
    case "layout":
      $("layout").value = e.layout;
      break;
    case "status":
      showStatus(e.status);
      break;
    case "reset":
      log.replaceChildren();
      shop.load().catch(() => {});
      ordersSoon();
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
  getToken: async () => token,
  onEvent,
  onState: (state) => {
    if (state === "open") $("announcement").hidden = true; // the greeting repeats it if still set
    showChatState();
  },
});

async function putSettings(change) {
  try {
    await api(`${B}/chat/settings`, { method: "PUT", token, body: change });
    say("mod-msg", t("채팅 설정을 바꿨습니다", "Chat settings changed"), "ok");
  } catch (err) {
    say("mod-msg", explain(err), "error");
  }
}
$("slow").addEventListener("change", () => putSettings({ slow_mode_s: Number($("slow").value) }));
$("freeze").addEventListener("change", () => putSettings({ frozen: $("freeze").checked }));

async function announce(text) {
  try {
    await api(`${B}/chat/announcement`, { method: "PUT", token, body: { text } });
    say("mod-msg", text ? t("공지를 올렸습니다", "Announcement posted") : t("공지를 내렸습니다", "Announcement cleared"), "ok");
  } catch (err) {
    say("mod-msg", explain(err), "error");
  }
}
$("announce-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("announce").value.trim();
  if (text) announce(text);
});
$("announce-clear").addEventListener("click", () => {
  $("announce").value = "";
  announce(null);
});

// -- co-hosting ----------------------------------------------------------------------------------
$("invite").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const doc = await api(`${B}/tokens`, { method: "POST", token,
      body: { role: "cohost", name: $("invite-name").value.trim() || "공동 진행자" } });
    const link = new URL(`/studio/${encodeURIComponent(bid)}`, location.href);
    link.searchParams.set("role", "cohost");
    link.searchParams.set("token", doc.token);
    $("invite-box").hidden = false;
    $("invite-link").value = link.href;
    $("invite-link").select();
    say("cohost-msg", t("링크를 공동 진행자에게 보내 주세요", "Send this link to your co-host"), "ok");
  } catch (err) {
    say("cohost-msg", explain(err), "error");
  }
});
$("copy-invite").addEventListener("click", async () => {
  const field = $("invite-link");
  try {
    await navigator.clipboard.writeText(field.value);
    say("cohost-msg", t("복사했습니다", "Copied"), "ok");
  } catch (_) {
    field.select(); // no clipboard access (plain http): let the person copy it
    say("cohost-msg", t("링크를 선택했습니다: 복사해 주세요", "The link is selected: copy it"));
  }
});

// Layout and co-host rights may not exist on an older server: their controls stay hidden.
async function loadCohostSettings() {
  try {
    const doc = await api(`${B}/cohost`, { token });
    if (isHost) {
      $("can-pin").checked = doc.can_pin;
      $("cohost-settings").hidden = false;
    } else if (role === "cohost" && canPin !== doc.can_pin) {
      canPin = doc.can_pin;
      applyPinRights();
    }
  } catch (_) {
    /* 404: no co-host settings on this server */
  }
  if (!isHost) return;
  try {
    const doc = await api(`${B}/layout`, { token });
    $("layout").value = doc.layout;
    $("layout-field").hidden = false;
  } catch (_) {
    /* 404: no layouts on this server */
  }
}
$("can-pin").addEventListener("change", async () => {
  try {
    await api(`${B}/cohost`, { method: "PUT", token, body: { can_pin: $("can-pin").checked } });
    say("cohost-msg", $("can-pin").checked ? t("공동 진행자도 고정할 수 있습니다", "Co-hosts may pin")
      : t("공동 진행자는 고정할 수 없습니다", "Co-hosts may not pin"), "ok");
  } catch (err) {
    say("cohost-msg", explain(err), "error");
  }
});
$("layout").addEventListener("change", async () => {
  try {
    await api(`${B}/layout`, { method: "PUT", token, body: { layout: $("layout").value } });
    say("cohost-msg", t("화면 배치를 바꿨습니다", "Layout changed"), "ok");
  } catch (err) {
    say("cohost-msg", explain(err), "error");
  }
});

// -- restream ------------------------------------------------------------------------------------
const restream = isHost ? new RestreamPanel(B, token) : null;
const numbers = isHost && token ? new NumbersPanel(B, token, $("numbers-panel")) : null;

// -- start ---------------------------------------------------------------------------------------
await useLang(); // the shared modules' words (refusals, errors) in the studio's language
applyPinRights();
if (!token) {
  status(t("호스트 토큰이 필요합니다 (?token=…)", "A host token is needed (?token=…)"), "error");
  refreshInfo();
} else {
  await refreshInfo(); // the broadcast's shape decides the camera's
  if (role !== "moderator") startCamera();
  shop.load().catch(() => {});
  chat.start();
  refreshOrders();
  loadCohostSettings();
  restream?.start();
  numbers?.start();
}
setInterval(() => {
  refreshInfo();
  if (token) {
    refreshOrders(); // a buyer's confirm is private to them: the feed catches up here
    if (role === "cohost") loadCohostSettings();
  }
}, 5000);

addEventListener("pagehide", () => {
  publisher?.stop({ keepalive: true });
  preview.stop({ keepalive: true });
  chat.stop();
  restream?.stop();
  numbers?.stop();
});

// Hooks for tests and debugging.
window.jt = {
  bid,
  role,
  get state() { return publisher ? publisher.state : "idle"; },
  get awake() { return Boolean(wakeLock); },
  get facing() { return facing; },
  get publisher() { return publisher; },
  get home() { return homeOrigin(); },
  get nodes() { return nodeUrls; },
  preview,
  chat,
  shop,
  refreshOrders,
  restream,
  numbers,
  async stats() {
    return {
      publish: publisher ? await publisher.stats() : null,
      output: await preview.stats(),
    };
  },
};
