import { broadcastId, broadcastInfo } from "/static/whip-whep.js";
import { Shop, priceNow, t, won } from "/static/live.js";

const bid = broadcastId();
const $ = (id) => document.getElementById(id);
const video = $("player"), notice = $("notice"), badge = $("badge");
const CHECK_MS = 5000; // the show's status and the pin; and the retry while it is not live
const HLS_URL = `/hls/${encodeURIComponent(bid)}/index.m3u8`;

let hls = null;
let state = "idle"; // idle, waiting, loading, playing, ended, missing
let checking = false;

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

function setBadge(s) {
  badge.dataset.status = s;
  badge.textContent = s === "live" ? "LIVE" : s === "ended" ? t("종료", "Ended") : t("대기 중", "Scheduled");
}

// -- the picture: LL-HLS through hls.js, muted (nobody is there to unmute it) --------------------
function stopHls() {
  if (!hls) return;
  hls.destroy();
  hls = null;
}

function startHls() {
  const Hls = window.Hls;
  state = "loading";
  if (!(Hls && Hls.isSupported())) {
    if (!video.canPlayType("application/vnd.apple.mpegurl")) {
      showNotice(t("이 화면에서는 재생할 수 없어요", "This screen cannot play the show"));
      return;
    }
    video.src = HLS_URL; // the browser's own HLS
    return;
  }
  let mediaRetries = 0;
  const player = new Hls({ lowLatencyMode: true, enableWorker: true, backBufferLength: 30 });
  hls = player;
  player.on(Hls.Events.MANIFEST_PARSED, () => {
    const p = video.play();
    if (p && p.catch) p.catch(() => {});
  });
  player.on(Hls.Events.ERROR, (_, data) => {
    if (!data.fatal || hls !== player) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && mediaRetries++ < 3) {
      player.recoverMediaError();
      return;
    }
    // the show ended, or the server is not ready yet: start over once the status says live
    stopHls();
    state = "waiting";
    showNotice(t("연결 중…", "Connecting…"));
    setTimeout(check, 2000);
  });
  player.loadSource(HLS_URL);
  player.attachMedia(video);
}

video.addEventListener("playing", () => {
  state = "playing";
  showNotice("");
});

// -- the pinned product, large ---------------------------------------------------------------------
const shop = new Shop(bid, () => renderProduct());

function renderProduct() {
  const p = shop.pinned();
  $("product").hidden = !p;
  if (!p) return;
  const img = $("p-image");
  if (p.image) {
    if (img.getAttribute("src") !== p.image) img.src = p.image;
    img.hidden = false;
  } else img.hidden = true;
  $("p-name").textContent = p.name;
  const { price, ended } = priceNow(p);
  const now = ended ? p.price : price;
  $("p-price").textContent = won(now);
  const was = Math.max(p.list_price || 0, p.deal && !ended ? p.price : 0);
  $("p-list").textContent = was > now ? won(was) : "";
  const stock = $("p-stock");
  stock.textContent = p.stock > 0 ? t(`남은 수량 ${p.stock}개`, `${p.stock} left`) : t("품절", "Sold out");
  stock.dataset.low = p.stock <= 5 ? "1" : "0";
}

// -- the show's status: wait for it, play it, then hand over to its replay -----------------------
async function check() {
  if (checking) return;
  checking = true;
  try {
    let info;
    try {
      info = await broadcastInfo(bid);
    } catch (err) {
      if (err.status === 404) {
        state = "missing";
        showNotice(t("방송을 찾을 수 없습니다", "Broadcast not found"));
      }
      return;
    }
    if (!info) return; // the network: the next check asks again
    $("title").textContent = info.title || t("장터 라이브", "Jangteo Live");
    document.title = `${info.title || "장터 라이브"} · 매장 화면 · Market screen`;
    setBadge(info.status);
    if (info.status === "ended") {
      state = "ended";
      stopHls();
      showNotice(t("방송이 끝났어요. 다시보기로 이동해요", "The show has ended: opening its replay"));
      location.replace(`/replay/${encodeURIComponent(bid)}`);
      return;
    }
    shop.load().catch(() => {});
    if (info.status !== "live") {
      state = "waiting";
      stopHls();
      showNotice(t("곧 방송이 시작됩니다", "The show starts soon"));
      return;
    }
    if (!hls && state !== "loading") {
      showNotice(t("연결 중…", "Connecting…"));
      startHls();
    }
  } finally {
    checking = false;
  }
}

// a screen left on all day: keep it awake while the page is shown (where the browser allows it)
async function stayAwake() {
  try {
    if (navigator.wakeLock && document.visibilityState === "visible") await navigator.wakeLock.request("screen");
  } catch (_) {
    /* not allowed here */
  }
}
document.addEventListener("visibilitychange", stayAwake);

if (bid) {
  check();
  setInterval(check, CHECK_MS);
  stayAwake();
} else showNotice(t("주소에 방송 ID가 없습니다", "No broadcast id in the address"));

// Hooks for tests and debugging.
window.jt = {
  bid,
  video,
  shop,
  get hls() { return hls; },
  get state() { return state; },
};
