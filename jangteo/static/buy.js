// Jangteo — the buyer's order flow the watch and replay pages share, two taps: Buy opens the
// order step (option, quantity, the total in won and about that in the buyer's currency), and
// Confirm places the order and pays it where this page can (else says where to pay). "My orders"
// keeps the hold countdowns, for reloads in sessionStorage. Plain ES module, no build step.
//
// The page supplies the products (with live stock) and a token; this module owns the dialog
// (it adds its markup to the page: ids buy-dialog, buy-form, buy-qty, place, pay, …) and the
// list in #order-list (its section #my-orders is shown once there is an order).

import { api, clock, explain, h, newKey, priceNow } from "/static/live.js";
import { currentCurrency, price, ratesDate, tr, translate } from "/static/i18n.js";

const DIALOG = `
<dialog id="buy-dialog" aria-labelledby="buy-title">
  <form id="buy-form">
    <h2 id="buy-title" data-i18n="buy.title">주문</h2>
    <p id="buy-name" class="name"></p>
    <div class="field" id="opt-field" hidden>
      <label for="buy-option" data-i18n="buy.option">옵션</label>
      <select id="buy-option" data-action="option"></select>
    </div>
    <div class="field">
      <label for="buy-qty" data-i18n="buy.qty">수량</label>
      <div class="qty">
        <button id="qty-minus" type="button" data-action="fewer" data-i18n-attr="aria-label:buy.fewer">−</button>
        <input id="buy-qty" type="number" min="1" max="99" value="1" inputmode="numeric" required>
        <button id="qty-plus" type="button" data-action="more" data-i18n-attr="aria-label:buy.more">+</button>
      </div>
    </div>
    <p><span data-i18n="buy.total">합계</span> <strong id="buy-total" class="price"></strong></p>
    <p id="buy-fx" class="meta" hidden></p>
    <div class="row">
      <button id="place" type="submit" class="primary" data-action="confirm" data-i18n="buy.place">구매 확정</button>
      <button id="buy-close" type="button" data-action="close" data-i18n="buy.close">닫기</button>
    </div>
    <p id="dialog-msg" class="msg" role="alert"></p>
  </form>
  <div id="confirm-step" hidden>
    <h2 id="confirm-title" data-i18n="buy.confirm_title">주문 확인</h2>
    <dl class="summary">
      <dt data-i18n="buy.item">상품</dt><dd id="c-name"></dd>
      <dt data-i18n="buy.qty">수량</dt><dd id="c-qty"></dd>
      <dt data-i18n="buy.total">금액</dt><dd id="c-total"></dd>
      <dt id="c-expires-label" data-i18n="buy.pay_within">결제 기한</dt><dd id="c-expires" class="countdown"></dd>
    </dl>
    <div class="row">
      <button id="pay" type="button" class="primary" data-action="pay" data-i18n="buy.pay">결제하기</button>
      <button id="cancel-order" type="button" data-action="cancel-order" data-i18n="buy.cancel">주문 취소</button>
      <button id="confirm-close" type="button" data-action="close" hidden data-i18n="buy.close">닫기</button>
    </div>
    <p id="confirm-msg" class="msg" role="alert"></p>
  </div>
</dialog>`;

export const statusText = (status) => tr(`order.${status}`);

function remember(key, value) {
  try {
    sessionStorage.setItem(key, value);
  } catch (_) {
    /* storage disabled */
  }
}

/**
 * One page's buying: the dialog, the orders placed from it, their confirm step.
 *
 * options: bid; getToken(refresh) -> Promise<string> (the buyer's viewer token);
 *   product(id) -> the product as it is now (with `deal`: {price, ends_at} or null), or null;
 *   via: "replay" to mark the orders as made from the replay (omitted: live);
 *   onRefused(err, product): an order was refused (the page redraws what it shows);
 *   onChange(): an order was placed or moved (stock changed: a page without events reloads);
 *   pollExpired: re-read a reserved order once its hold ran out (pages without chat events).
 */
export class BuyFlow {
  constructor(options) {
    this.o = options;
    this.orders = new Map(); // id -> {order, token}
    this.buying = null; // the product the dialog is about
    this.confirming = null; // the order id the dialog's confirm step is about
    this.key = `jangteo:orders:${options.bid}`;
    this._polled = new Set(); // reserved orders re-read after their hold ran out
    if (!document.getElementById("buy-dialog")) {
      document.body.insertAdjacentHTML("beforeend", DIALOG);
      translate(document.getElementById("buy-dialog"));
    }
    const $ = (id) => document.getElementById(id);
    this.$ = $;
    this.dialog = $("buy-dialog");
    this.qtyInput = $("buy-qty");
    this.optSel = $("buy-option");
    $("buy-close").addEventListener("click", () => this.dialog.close());
    $("confirm-close").addEventListener("click", () => this.dialog.close());
    this.optSel.addEventListener("change", () => this.updateTotal());
    this.qtyInput.addEventListener("input", () => this.updateTotal());
    $("qty-minus").addEventListener("click", () => {
      this.qtyInput.value = String(Math.max(1, (parseInt(this.qtyInput.value, 10) || 1) - 1));
      this.updateTotal();
    });
    $("qty-plus").addEventListener("click", () => {
      this.qtyInput.value = String(Math.min(this.maxQty(), (parseInt(this.qtyInput.value, 10) || 1) + 1));
      this.updateTotal();
    });
    $("buy-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.place();
    });
    $("pay").addEventListener("click", () => this.move("confirm"));
    $("cancel-order").addEventListener("click", () => this.move("cancel"));
    setInterval(() => this.tick(), 1000);
  }

  get isOpen() {
    return this.dialog.open;
  }

  // -- the order step ----------------------------------------------------------------------------
  chosenStock() {
    const b = this.buying;
    if (!b) return 0;
    if (b.options?.length) {
      const o = b.options.find((x) => x.id === this.optSel.value);
      return o ? o.stock : 0;
    }
    return b.stock;
  }

  maxQty() {
    const limit = this.buying?.per_buyer_limit || 99;
    return Math.max(1, Math.min(99, limit, this.chosenStock() || 1));
  }

  updateTotal() {
    const p = this.buying && this.o.product(this.buying.id);
    if (p) this.buying = p;
    if (!this.buying) return;
    this.qtyInput.max = String(this.maxQty());
    const qty = Math.max(1, Math.min(this.maxQty(), parseInt(this.qtyInput.value, 10) || 1));
    this.$("buy-total").textContent = price(priceNow(this.buying).price * qty);
    const fx = this.$("buy-fx");
    fx.hidden = !currentCurrency();
    if (currentCurrency()) fx.textContent = tr("buy.in_won", { date: ratesDate() || "" });
  }

  /** The product changed (stock, deal): the open order step follows. */
  refresh() {
    if (this.dialog.open && !this.$("buy-form").hidden) this.updateTotal();
  }

  /** Open the order step for `product` (as the page shows it: with its deal, or none). */
  open(product) {
    if (!product) return;
    const $ = this.$;
    this.buying = product;
    $("buy-form").hidden = false;
    $("confirm-step").hidden = true;
    $("buy-name").textContent = product.name;
    $("dialog-msg").textContent = "";
    const opts = product.options || [];
    $("opt-field").hidden = !opts.length;
    this.optSel.replaceChildren(...opts.map((o) => h("option", { value: o.id, disabled: o.stock <= 0 },
      o.stock > 0 ? `${o.name} (${tr("buy.left", { n: o.stock })})` : `${o.name} (${tr("buy.sold_out")})`)));
    const firstInStock = opts.find((o) => o.stock > 0);
    if (firstInStock) this.optSel.value = firstInStock.id;
    this.qtyInput.value = "1";
    this.updateTotal();
    this.dialog.showModal();
    (opts.length ? this.optSel : this.qtyInput).focus();
  }

  async place() {
    const buying = this.buying;
    if (!buying) return;
    const place = this.$("place"), msg = this.$("dialog-msg");
    const qty = parseInt(this.qtyInput.value, 10);
    if (!(qty >= 1 && qty <= 99)) {
      msg.textContent = tr("buy.bad_qty");
      return;
    }
    const body = { product_id: buying.id, qty };
    if (buying.options?.length) body.option = this.optSel.value;
    if (this.o.via) body.via = this.o.via;
    if (currentCurrency()) body.currency = currentCurrency(); // recorded with the order: it is charged in won
    const key = newKey(); // one per tap; the retries of this tap reuse it
    place.disabled = true;
    msg.textContent = tr("buy.ordering");
    try {
      const tok = await this.o.getToken(false);
      const order = await api(`/api/broadcasts/${encodeURIComponent(this.o.bid)}/orders`, {
        method: "POST", token: tok, body, headers: { "Idempotency-Key": key }, retries: 2,
      });
      this.addOrder(order, tok);
      this.showConfirm(order.id);
      this.o.onChange?.();
      // The same tap pays where payment happens on this page (the test provider); with a payment
      // provider outside, the step says where to pay and the order waits for its callback.
      if (order.status === "reserved") await this.move("confirm");
    } catch (err) {
      msg.textContent = explain(err);
      this.o.onRefused?.(err, buying);
    } finally {
      place.disabled = false;
    }
  }

  // -- my orders ---------------------------------------------------------------------------------
  save() {
    remember(this.key, JSON.stringify([...this.orders.values()].map((o) => ({ id: o.order.id, token: o.token }))));
  }

  addOrder(order, tok) {
    this.orders.set(order.id, { order, token: tok });
    this.save();
    this.render();
  }

  render() {
    const list = this.$("order-list");
    if (!list) return;
    const rows = [...this.orders.values()].sort((a, b) => b.order.created_at - a.order.created_at);
    const section = this.$("my-orders");
    if (section) section.hidden = !rows.length;
    list.replaceChildren(...rows.map(({ order }) => {
      const reserved = order.status === "reserved";
      const name = order.shown?.name || order.product_id;
      return h("li", { dataset: { id: order.id, status: order.status } },
        h("span", { class: "what" }, `${name} × ${order.qty} · ${price(order.total ?? order.unit_price * order.qty)}`),
        h("span", { class: "status-pill", dataset: { status: order.status } }, statusText(order.status)),
        reserved ? h("span", { class: "countdown", dataset: { expires: order.expires_at } }, clock(order.expires_at - Date.now())) : null,
        reserved ? h("button", { type: "button", class: "small primary", onclick: () => this.showConfirm(order.id),
          dataset: { action: "pay", orderId: order.id },
          "aria-label": tr("buy.pay_for", { name }) }, tr("buy.pay_short")) : null);
    }));
  }

  tick() {
    for (const el of document.querySelectorAll("#order-list [data-expires]")) {
      el.textContent = clock(Number(el.dataset.expires) - Date.now());
    }
    const o = this.confirming && this.orders.get(this.confirming)?.order;
    if (o && o.status === "reserved") this.$("c-expires").textContent = clock(o.expires_at - Date.now());
    if (this.o.pollExpired) {
      for (const entry of this.orders.values()) {
        const { order } = entry;
        if (order.status !== "reserved" || Date.now() < order.expires_at + 1000 || this._polled.has(order.id)) continue;
        this._polled.add(order.id);
        api(`/api/orders/${encodeURIComponent(order.id)}`, { token: entry.token, retries: 1 })
          .then((fresh) => this.orderStatus({ id: order.id, status: fresh.status }))
          .catch(() => {});
      }
    }
  }

  showConfirm(oid) {
    const entry = this.orders.get(oid);
    if (!entry) return;
    const $ = this.$;
    const o = entry.order;
    this.confirming = oid;
    $("buy-form").hidden = true;
    $("confirm-step").hidden = false;
    $("c-name").textContent = o.shown?.name || o.product_id;
    $("c-qty").textContent = tr("buy.count", { n: o.qty });
    $("c-total").textContent = price(o.total ?? o.unit_price * o.qty);
    $("confirm-msg").textContent = "";
    this.renderConfirm();
    if (!this.dialog.open) this.dialog.showModal();
    $(o.status === "reserved" ? "pay" : "confirm-close").focus();
  }

  renderConfirm() {
    const $ = this.$;
    const o = this.confirming && this.orders.get(this.confirming)?.order;
    if (!o) return;
    const reserved = o.status === "reserved";
    $("pay").hidden = !reserved;
    $("cancel-order").hidden = !reserved;
    $("confirm-close").hidden = reserved;
    const label = $("c-expires-label");
    label.dataset.i18n = reserved ? "buy.pay_within" : "buy.status";
    label.textContent = tr(label.dataset.i18n);
    $("c-expires").textContent = reserved ? clock(o.expires_at - Date.now()) : statusText(o.status);
    const msg = $("confirm-msg");
    if (o.status === "paid") {
      msg.textContent = tr("buy.paid");
      msg.dataset.kind = "ok";
    } else if (o.status === "cancelled") {
      msg.textContent = tr("buy.cancelled");
      msg.dataset.kind = "";
    } else if (o.status === "expired") {
      msg.textContent = explain({ code: "order_expired" });
      msg.dataset.kind = "error";
    }
  }

  /** Pay ("confirm") or cancel the order of the confirm step. */
  async move(target) {
    const entry = this.confirming && this.orders.get(this.confirming);
    if (!entry) return;
    const $ = this.$;
    const pay = $("pay"), cancel = $("cancel-order"), msg = $("confirm-msg");
    pay.disabled = cancel.disabled = true;
    msg.textContent = target === "confirm" ? tr("buy.paying") : tr("buy.cancelling");
    msg.dataset.kind = "";
    try {
      const order = await api(`/api/orders/${encodeURIComponent(entry.order.id)}/${target}`, {
        method: "POST", token: entry.token, retries: 2, // moving to the same state again is a no-op
      });
      entry.order = { ...entry.order, ...order };
      this.o.onChange?.();
    } catch (err) {
      msg.textContent = explain(err);
      msg.dataset.kind = err.code === "payment_required" ? "" : "error"; // not a failure: next step
      if (err.code === "order_expired") entry.order.status = "expired";
    } finally {
      pay.disabled = cancel.disabled = false;
    }
    this.render();
    this.renderConfirm();
    if (this.dialog.open && entry.order.status !== "reserved") $("confirm-close").focus();
  }

  /** An order's new status, from an event ({id, status}) or a fresh read. */
  orderStatus(e) {
    const entry = this.orders.get(e.id);
    if (!entry || entry.order.status === e.status) return;
    entry.order.status = e.status;
    this.render();
    if (this.confirming === e.id) this.renderConfirm();
    if (e.status === "expired" || e.status === "cancelled") this.o.onChange?.();
  }

  /** The orders this tab placed before (a reload), read again from the server. */
  async load() {
    let saved = [];
    try {
      saved = JSON.parse(sessionStorage.getItem(this.key) || "[]");
    } catch (_) {
      /* none */
    }
    for (const { id, token: tok } of saved) {
      try {
        const order = await api(`/api/orders/${encodeURIComponent(id)}`, { token: tok, retries: 1 });
        this.orders.set(id, { order, token: tok });
      } catch (_) {
        /* gone, or the token expired */
      }
    }
    this.render();
  }
}
