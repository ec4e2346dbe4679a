// Jangteo — the studio's "Go live on other platforms" panel: add an RTMP(S) destination from a
// platform preset (server URL + a hidden stream key), see each push's status live, remove one.
// The server never shows a stream key again: the list carries masked URLs only.

import { api, explain, h, t } from "/static/live.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 3000;

// URL shapes of the common platforms. Where a platform hands out a server URL per show, the
// field is left for the merchant to paste it.
export const PRESETS = [
  { id: "naver", name: t("네이버 쇼핑라이브", "Naver Shopping Live"), server: "",
    hint: t("쇼핑라이브 관리툴의 외부 송출(RTMP) 화면에서 서버 URL과 스트림 키를 복사하세요",
      "Copy the server URL and stream key from Shopping Live's external (RTMP) broadcast screen") },
  { id: "coupang", name: t("쿠팡 라이브", "Coupang Live"), server: "",
    hint: t("쿠팡 라이브 크리에이터 센터의 송출 정보에서 복사하세요",
      "Copy them from the streaming details in Coupang Live's creator center") },
  { id: "kakao", name: t("카카오 쇼핑라이브", "Kakao Shopping Live"), server: "",
    hint: t("카카오 쇼핑라이브 파트너센터의 RTMP 송출 정보를 붙여 넣으세요",
      "Paste the RTMP details from Kakao's partner center") },
  { id: "youtube", name: "YouTube", server: "rtmps://a.rtmps.youtube.com:443/live2",
    hint: t("YouTube 스튜디오 → 라이브 스트리밍 → 스트림 키", "YouTube Studio → Go live → Stream key") },
  { id: "facebook", name: "Facebook", server: "rtmps://live-api-s.facebook.com:443/rtmp",
    hint: t("라이브 프로듀서 → 스트리밍 소프트웨어 → 스트림 키", "Live Producer → Streaming software → Stream key") },
  { id: "tiktok", name: "TikTok LIVE", server: "",
    hint: t("LIVE 센터의 서버 URL과 스트림 키를 붙여 넣으세요", "Paste the server URL and stream key from LIVE Center") },
  { id: "twitch", name: "Twitch", server: "rtmp://live.twitch.tv/app",
    hint: t("크리에이터 대시보드 → 설정 → 스트림 → 기본 스트림 키", "Creator dashboard → Settings → Stream → Primary stream key") },
  { id: "other", name: t("기타 RTMP(S)", "Other RTMP(S)"), server: "",
    hint: t("rtmp:// 또는 rtmps:// 로 시작하는 서버 URL", "A server URL starting with rtmp:// or rtmps://") },
];

const STATUS = {
  idle: t("대기", "Idle"),
  connecting: t("연결 중", "Connecting"),
  live: t("송출 중", "Live"),
  retrying: t("재연결 중", "Retrying"),
  failed: t("실패", "Failed"),
};

function megabytes(n) {
  return `${(Number(n || 0) / 1e6).toFixed(1)} MB`;
}

/** What the merchant typed as one URL: the server URL, a slash, the key. */
export function joinUrl(server, key) {
  return `${server.trim().replace(/\/+$/, "")}/${key.trim().replace(/^\/+/, "")}`;
}

export class RestreamPanel {
  constructor(base, token) {
    this.path = `${base}/destinations`;
    this.base = base;
    this.token = token;
    this.destinations = [];
    this.timer = null;
    this.form = $("restream-form");
    const preset = $("rs-preset");
    for (const p of PRESETS) preset.append(h("option", { value: p.id }, p.name));
    preset.addEventListener("change", () => this.usePreset());
    this.usePreset();
    $("rs-show-key").addEventListener("click", () => {
      const key = $("rs-key");
      const shown = key.type === "password";
      key.type = shown ? "text" : "password";
      $("rs-show-key").setAttribute("aria-pressed", String(shown));
      $("rs-show-key").textContent = shown ? t("숨기기", "Hide") : t("보기", "Show");
    });
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.add();
    });
  }

  usePreset() {
    const p = PRESETS.find((x) => x.id === $("rs-preset").value) || PRESETS[0];
    $("rs-server").value = p.server;
    $("rs-hint").textContent = p.hint;
    $("rs-name").value = p.name;
  }

  say(text, kind = "") {
    const el = $("restream-msg");
    el.textContent = text;
    el.dataset.kind = kind;
  }

  async start() {
    try {
      const info = await api(this.base, { token: this.token });
      const sel = $("rs-rendition");
      for (const r of info.renditions || []) {
        sel.append(h("option", { value: r.name }, `${r.name} · ${Math.round(r.bitrate / 1000)} kbps`));
      }
    } catch (_) {
      /* the list of renditions is a nicety: the server picks the top one */
    }
    await this.refresh();
    this.timer = setInterval(() => {
      if (document.visibilityState === "visible") this.refresh();
    }, POLL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async refresh() {
    try {
      this.destinations = await api(this.path, { token: this.token });
      this.render();
    } catch (err) {
      if (err?.status === 404) $("restream-panel").hidden = true; // not set up on this server
    }
  }

  render() {
    const list = $("destinations");
    list.replaceChildren(...this.destinations.map((d) => h("li", { dataset: { destinationId: d.id, status: d.status } },
      h("span", { class: "dest-name" }, d.name,
        h("span", { class: "badge", dataset: { status: d.status } }, STATUS[d.status] || d.status)),
      h("button", { type: "button", class: "small", dataset: { action: "restream-remove", destinationId: d.id },
        "aria-label": t(`${d.name} 송출 중단`, `Stop sending to ${d.name}`), onclick: () => this.remove(d) },
      t("중단", "Remove")),
      h("p", { class: "dest-url" }, `${d.url} · ${d.rendition} · ${megabytes(d.bytes_sent)}`),
      (d.status === "retrying" || d.status === "failed") && d.last_error
        ? h("p", { class: "dest-error" }, d.last_error) : null,
    )));
    if (!this.destinations.length) {
      list.append(h("li", { class: "meta" }, t("아직 없습니다. 같은 방송을 다른 플랫폼에도 내보내 보세요",
        "None yet: send this show to other platforms too")));
    }
  }

  async add() {
    const server = $("rs-server").value, key = $("rs-key").value;
    if (!server.trim() || !key.trim()) {
      this.say(t("서버 URL과 스트림 키를 모두 넣어 주세요", "Enter both the server URL and the stream key"), "error");
      return;
    }
    const body = { name: $("rs-name").value.trim() || "RTMP", url: joinUrl(server, key) };
    if ($("rs-rendition").value) body.rendition = $("rs-rendition").value;
    try {
      await api(this.path, { method: "POST", token: this.token, body });
      $("rs-key").value = ""; // the key is the server's secret now
      $("restream-add-box").open = false;
      this.say(t("추가했습니다. 방송 중이면 바로 송출을 시작합니다", "Added: it starts sending while you are live"), "ok");
      await this.refresh();
    } catch (err) {
      this.say(this.why(err), "error");
    }
  }

  why(err) {
    switch (err?.code) {
      case "bad_destination_url":
        return t("rtmp:// 또는 rtmps:// 로 시작하고 스트림 키로 끝나야 합니다",
          "It must start with rtmp:// or rtmps:// and end with the stream key");
      case "private_destination":
        return t("내부 네트워크 주소로는 송출할 수 없습니다", "Cannot send to an internal network address");
      case "too_many_destinations":
        return t("송출 대상은 5개까지입니다", "At most 5 platforms at once");
      default:
        return explain(err);
    }
  }

  async remove(d) {
    try {
      await api(`${this.path}/${encodeURIComponent(d.id)}`, { method: "DELETE", token: this.token });
      this.say(t(`${d.name} 송출을 멈췄습니다`, `Stopped sending to ${d.name}`), "ok");
    } catch (err) {
      this.say(explain(err), "error");
    }
    await this.refresh();
  }
}
