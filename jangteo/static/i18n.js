// Jangteo — the viewer's words and money: one catalog per language (/static/i18n-<lang>.json,
// Korean the fallback), picked from ?lang=, then the visitor's earlier choice, then the language
// the server read from Accept-Language (<html data-lang>), then the browser's; and prices in won
// with an approximate amount in the visitor's currency (?currency=) at the operator's rates.
import { store, stored } from "/static/storage.js";

export const LANGS = ["ko", "en", "zh", "ja"];
export const LANG_NAMES = { ko: "한국어", en: "English", zh: "中文", ja: "日本語" };
const LOCALES = { ko: "ko-KR", en: "en-US", zh: "zh-CN", ja: "ja-JP" };
const LANG_KEY = "jangteo:lang";
const CURRENCY_KEY = "jangteo:currency";

let lang = "ko";
let words = {};
let fallback = {};


/** The language to speak: ?lang=, a choice made before, Accept-Language, the browser's. */
export function chooseLang() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (LANGS.includes(asked)) {
    store(LANG_KEY, asked);
    return asked;
  }
  const before = stored(LANG_KEY);
  if (LANGS.includes(before)) return before;
  const server = document.documentElement.dataset.lang;
  if (LANGS.includes(server)) return server;
  for (const l of navigator.languages || [navigator.language || ""]) {
    const base = String(l).toLowerCase().split("-")[0];
    if (LANGS.includes(base)) return base;
  }
  return "ko";
}

async function catalog(l) {
  const resp = await fetch(`/static/i18n-${l}.json`, { cache: "no-cache" });
  if (!resp.ok) throw new Error(`no catalog for ${l}`);
  return resp.json();
}

/** Load the catalog of ``l`` (and Korean, the fallback) and put its words into the page. */
export async function useLang(l = chooseLang()) {
  lang = LANGS.includes(l) ? l : "ko";
  const [mine, ko] = await Promise.all([
    catalog(lang).catch(() => ({})),
    lang === "ko" ? null : catalog("ko").catch(() => ({})),
  ]);
  words = mine;
  fallback = ko || mine;
  document.documentElement.lang = lang;
  translate();
  return lang;
}

/** Choose another language (remembered), and redraw what the page marked. */
export async function setLang(l) {
  store(LANG_KEY, l);
  await useLang(l);
}

export const currentLang = () => lang;
export const locale = () => LOCALES[lang];

/** The words for ``key`` in the page's language, with {name} filled from ``vars``. */
export function tr(key, vars = {}) {
  const text = words[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/**
 * Put the words into elements marked with data-i18n="key" (their text) and
 * data-i18n-attr="attribute:key;attribute:key" (aria-label, placeholder, title).
 */
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = tr(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      if (attr && key) el.setAttribute(attr.trim(), tr(key.trim()));
    }
  }
}

// -- money ---------------------------------------------------------------------------------------
let rates = null; // {date, rates: {CODE: {per_won, decimals}}} from GET /api/fx
let currency = null; // the visitor's own currency, when the operator has a rate for it

/** The currency asked for (?currency=, or an earlier choice); won alone when none. */
export function chooseCurrency() {
  const asked = (new URLSearchParams(location.search).get("currency") || "").toUpperCase();
  if (/^[A-Z]{3}$/.test(asked)) {
    store(CURRENCY_KEY, asked === "KRW" ? "" : asked);
    return asked === "KRW" ? null : asked;
  }
  const before = stored(CURRENCY_KEY);
  return before && /^[A-Z]{3}$/.test(before) ? before : null;
}

/** Read the operator's rates; the chosen currency stays only if there is a rate for it. */
export async function useCurrency(code = chooseCurrency()) {
  try {
    const resp = await fetch("/api/fx", { cache: "no-cache" });
    rates = resp.ok ? await resp.json() : null;
  } catch (_) {
    rates = null;
  }
  currency = code && rates?.rates?.[code] ? code : null;
  return currency;
}

export function setCurrency(code) {
  currency = code && rates?.rates?.[code] ? code : null;
  store(CURRENCY_KEY, currency || "");
  return currency;
}

export const currentCurrency = () => currency;
export const offeredCurrencies = () => Object.keys(rates?.rates || {});
export const ratesDate = () => rates?.date || null;

/** ``n`` won as the visitor reads it: 29,900원 in Korean, ₩29,900 elsewhere. */
export function won(n) {
  const v = Number(n || 0);
  if (lang === "ko") return `${v.toLocaleString("ko-KR")}원`;
  return new Intl.NumberFormat(locale(), { style: "currency", currency: "KRW" }).format(v);
}

/** ``n`` won in the visitor's currency (``US$21.50``), or "" when there is none. */
export function approx(n) {
  const r = currency && rates?.rates?.[currency];
  if (!r) return "";
  const scale = 10 ** r.decimals;
  const amount = Math.round(Number(n || 0) * r.per_won * scale) / scale;
  return new Intl.NumberFormat(locale(), {
    style: "currency", currency, minimumFractionDigits: r.decimals, maximumFractionDigits: r.decimals,
  }).format(amount);
}

/** ``29,900원 ≈ US$21.50``: won, and about how much that is for the visitor. */
export function price(n) {
  const other = approx(n);
  return other ? `${won(n)} ≈ ${other}` : won(n);
}
