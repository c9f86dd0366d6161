// Orders: recent orders by status, the payment provider's callbacks with their outcome and
// refusal reason, orders stuck in pending, and expiring or reconciling them.

import { useState } from "preact/hooks";
import { get, post, query } from "../../shared/api";
import { duration, money, time } from "../../shared/format";
import type { Order, Page, PaymentCallback } from "../../shared/types";
import { useLoad } from "../hooks/use-load";
import { useAction, useFeedback } from "../parts/feedback";
import { Link } from "../parts/link";
import { LoadState } from "../parts/status";

const STATUSES = ["pending", "paid", "failed", "expired"];
/** An order still pending after this long is stuck: the provider should have called back. */
const STUCK_AFTER_S = 15 * 60;

function OrderTable(props: { orders: Order[]; caption: string; actions: boolean; onChanged(): void }) {
  const act = useAction();
  const { confirm } = useFeedback();
  const expire = async (order: Order) => {
    const ok = await confirm({
      title: `Expire order ${order.id}?`,
      body: <p>The order is given up: a late payment callback for it is refused and recorded.</p>,
      confirm: "Expire order",
      danger: true,
    });
    if (!ok) return;
    await act(() => post<Order>(`/admin/orders/${order.id}/expire`), `Order ${order.id} expired.`);
    props.onChanged();
  };
  const reconcile = async (order: Order) => {
    const ok = await confirm({
      title: `Reconcile order ${order.id}?`,
      body: <p>The API looks up what is known about its payment and settles the order accordingly.</p>,
      confirm: "Reconcile",
    });
    if (!ok) return;
    await act(() => post<Order>(`/admin/orders/${order.id}/reconcile`), (o) => `Order ${o.id} is ${o.status}.`);
    props.onChanged();
  };
  if (props.orders.length === 0) return <p class="empty">No orders.</p>;
  return (
    <div class="table-wrap">
      <table class="cards">
        <caption class="visually-hidden">{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">Order</th>
            <th scope="col">Room</th>
            <th scope="col">Amount</th>
            <th scope="col">Status</th>
            <th scope="col">Created</th>
            <th scope="col">Payment reference</th>
            {props.actions && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {props.orders.map((order) => (
            <tr key={order.id}>
              <th scope="row" data-label="Order">
                #{order.id} <span class="muted">user {order.user_id}</span>
              </th>
              <td data-label="Room">
                <Link to={`/rooms/${order.room_id}`}>#{order.room_id}</Link>
              </td>
              <td data-label="Amount">{money(order.amount, order.currency)}</td>
              <td data-label="Status">
                <span class={`badge badge-${order.status}`}>{order.status}</span>
              </td>
              <td data-label="Created">
                {time(order.created_at)} <span class="muted">({duration((Date.now() - order.created_at) / 1000)} ago)</span>
              </td>
              <td data-label="Payment reference">
                <code>{order.payment_reference ?? "—"}</code>
              </td>
              {props.actions && (
                <td data-label="Actions">
                  {order.status === "pending" && (
                    <div class="actions">
                      <button type="button" onClick={() => void reconcile(order)}>
                        Reconcile<span class="visually-hidden"> order {order.id}</span>
                      </button>
                      <button type="button" class="danger" onClick={() => void expire(order)}>
                        Expire<span class="visually-hidden"> order {order.id}</span>
                      </button>
                    </div>
                  )}
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function OrdersPage() {
  const [status, setStatus] = useState("paid");
  const recent = useLoad(() => get<Page<Order>>(`/admin/orders${query({ status, limit: 50 })}`), `orders-${status}`);
  const stuck = useLoad(() => get<Page<Order>>(`/admin/orders${query({ status: "pending", older_than: STUCK_AFTER_S, limit: 50 })}`), "stuck");
  const callbacks = useLoad(() => get<Page<PaymentCallback>>(`/admin/payments/callbacks${query({ limit: 50 })}`), "callbacks");
  const changed = () => {
    recent.reload();
    stuck.reload();
    callbacks.reload();
  };

  return (
    <>
      <div class="page-head">
        <h1>Orders</h1>
      </div>
      <section aria-labelledby="stuck-heading">
        <h2 id="stuck-heading">Stuck in pending (over {STUCK_AFTER_S / 60} minutes)</h2>
        <LoadState load={stuck} what="pending orders" />
        {stuck.data && <OrderTable orders={stuck.data.items} caption="Orders stuck in pending" actions onChanged={changed} />}
      </section>
      <section aria-labelledby="recent-heading">
        <div class="section-head">
          <h2 id="recent-heading">Recent orders</h2>
          <label>
            Status{" "}
            <select value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
              {STATUSES.map((s) => (
                <option value={s}>{s}</option>
              ))}
            </select>
          </label>
        </div>
        <LoadState load={recent} what="orders" />
        {recent.data && <OrderTable orders={recent.data.items} caption={`Orders ${status}`} actions={status === "pending"} onChanged={changed} />}
      </section>
      <section aria-labelledby="callbacks-heading">
        <h2 id="callbacks-heading">Payment callbacks</h2>
        <LoadState load={callbacks} what="callbacks" />
        {callbacks.data && callbacks.data.items.length === 0 && <p class="empty">No callbacks received.</p>}
        {callbacks.data && callbacks.data.items.length > 0 && (
          <div class="table-wrap">
            <table class="cards">
              <caption class="visually-hidden">Payment callbacks</caption>
              <thead>
                <tr>
                  <th scope="col">Received</th>
                  <th scope="col">Provider event</th>
                  <th scope="col">Order</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Reason</th>
                </tr>
              </thead>
              <tbody>
                {callbacks.data.items.map((callback) => (
                  <tr key={callback.id}>
                    <th scope="row" data-label="Received">
                      {time(callback.received_at)}
                    </th>
                    <td data-label="Provider event">
                      {callback.provider} <code>{callback.event_id}</code>
                    </td>
                    <td data-label="Order">{callback.order_id ?? "—"}</td>
                    <td data-label="Outcome">
                      <span class={`badge badge-${callback.outcome}`}>{callback.outcome}</span>
                    </td>
                    <td data-label="Reason">{callback.reason ?? "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}
