#!/usr/bin/env python3
"""Commerce writes for bench/costs.sh (standard library only).

  commerce_ops.py setup URL SELLER DEV_TOKEN REVIEWER_TOKEN UNITS
      A REALTIME product with one combination, taken PLANNING -> SALES (the
      reviewer approves: four-eyes), stock set to UNITS; prints
      "PRODUCT COMBINATION".
  commerce_ops.py reserve URL BUYER_TOKEN PRODUCT COMBINATION N CONCURRENCY
      N POST /v1/reservations (one unit, a fresh Idempotency-Key each) over
      CONCURRENCY keep-alive connections; a success is 202.
  commerce_ops.py order URL BUYER_TOKEN PRODUCT COMBINATION N CONCURRENCY ORDERS_FILE
      N POST /v1/orders (one unit, a fresh Idempotency-Key each); a success is
      201; writes "id amount_minor currency" of each order to ORDERS_FILE.
  commerce_ops.py pay URL PSP_TOKEN ORDERS_FILE CONCURRENCY
      One payment.succeeded event per order of ORDERS_FILE, for its total; a
      success is an answer with order_status PAID.
Each driving command prints "RESULT <requests> <errors>" last (the first few
errors are printed to stderr).
"""

import http.client
import json
import sys
import threading
import urllib.parse
import uuid


class Api:
    def __init__(self, url, token):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.conn = None

    def send(self, method, path, body=None, headers=None):
        h = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, r.headers, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def expect(answer, status, what):
    code, headers, body = answer
    if code != status:
        sys.exit(f"{what}: {code} {body}")
    return headers, body


def setup(url, seller, dev_token, reviewer_token, units):
    dev, reviewer = Api(url, dev_token), Api(url, reviewer_token)
    headers, view = expect(dev.send("POST", "/v1/products", {
        "seller_id": seller, "name": "Costs lamp", "category": "home", "type": "REALTIME",
        "price": {"amount_minor": 3000, "currency": "EUR"}}), 201, "create product")
    product, tag = view["id"], headers["ETag"]
    headers, view = expect(dev.send("POST", f"/v1/products/{product}/option-groups",
                                    {"name": "Colour", "options": [{"name": "Brass"}]},
                                    {"If-Match": tag}), 200, "option group")
    option, tag = view["option_groups"][0]["options"][0]["id"], headers["ETag"]
    headers, view = expect(dev.send("POST", f"/v1/products/{product}/combinations",
                                    {"sku": "LAMP-BRASS", "option_ids": [option]},
                                    {"If-Match": tag}), 200, "combination")
    combination, tag = view["combinations"][0]["id"], headers["ETag"]
    for api, action in [(dev, "start_development"), (dev, "submit_for_review"),
                        (reviewer, "approve"), (dev, "launch"), (dev, "start_sales")]:
        headers, _ = expect(api.send("POST", f"/v1/products/{product}/transitions",
                                     {"action": action}, {"If-Match": tag}), 200, action)
        tag = headers["ETag"]
    expect(dev.send("POST", f"/v1/products/{product}/stock",
                    {"combination_id": combination, "set": int(units), "reason": "costs"}),
           200, "stock")
    print(product, combination)


def drive(items, concurrency, url, token, one):
    """Runs one(api, item) -> error text or None over `concurrency` threads."""
    items = list(items)
    lock = threading.Lock()
    errors = []
    position = [0]

    def worker():
        api = Api(url, token)
        while True:
            with lock:
                if position[0] >= len(items):
                    return
                item = items[position[0]]
                position[0] += 1
            try:
                error = one(api, item)
            except Exception as e:  # noqa: BLE001 - counted and shown, not hidden
                error = repr(e)
            if error:
                with lock:
                    errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(int(concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    print(f"RESULT {len(items)} {len(errors)}")


def reserve(url, token, product, combination, n, concurrency):
    body = {"product_id": product, "combination_id": combination, "quantity": 1}

    def one(api, _):
        code, _, view = api.send("POST", "/v1/reservations", body,
                                 {"Idempotency-Key": f'"{uuid.uuid4()}"'})
        return None if code == 202 else f"{code} {view}"

    drive(range(int(n)), concurrency, url, token, one)


def order(url, token, product, combination, n, concurrency, orders_file):
    body = {"items": [{"product_id": product, "combination_id": combination, "quantity": 1}]}
    placed = []

    def one(api, _):
        code, _, view = api.send("POST", "/v1/orders", body,
                                 {"Idempotency-Key": f'"{uuid.uuid4()}"'})
        if code != 201:
            return f"{code} {view}"
        placed.append(f'{view["id"]} {view["total"]["amount_minor"]} {view["total"]["currency"]}')
        return None

    drive(range(int(n)), concurrency, url, token, one)
    with open(orders_file, "w") as f:
        f.write("\n".join(placed) + "\n")


def pay(url, token, orders_file, concurrency):
    orders = [line.split() for line in open(orders_file) if line.strip()]

    def one(api, o):
        order_id, amount, currency = o
        code, _, view = api.send("POST", "/v1/payments/events", {
            "event_id": f"costs-{uuid.uuid4()}", "type": "payment.succeeded", "order_id": order_id,
            "amount": {"amount_minor": int(amount), "currency": currency}})
        if code // 100 != 2 or view.get("order_status") != "PAID":
            return f"{code} {view}"
        return None

    drive(orders, concurrency, url, token, one)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"setup": setup, "reserve": reserve, "order": order, "pay": pay}[command](*args)
