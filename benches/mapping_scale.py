#!/usr/bin/env python3
"""Writes the synthetic mappings of issue 18's scaling figures into DIR (default
target/mapping-scale): mappings with 25, 50 and 100 fields (paths, trim, lookups, decimals,
coalesce) plus a 6-rule `lines` block, their schemas, a 50-entry lookup table, and events with
0, 10 and 50 lines. Measure with, for example:

  HANDOFF_MAPPINGS_DIR=DIR/mappings HANDOFF_SCHEMAS_DIR=DIR/schemas \\
    target/release/handoff mapping bench DIR/mappings/scale100.yaml --event DIR/event50.json

(and the callgrind command in BENCHMARKS.md for instruction counts)."""
import json
import os
import random
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "target/mapping-scale"
os.makedirs(f"{out}/mappings/lookups", exist_ok=True)
os.makedirs(f"{out}/schemas", exist_ok=True)
random.seed(7)

with open(f"{out}/mappings/lookups/codes.yaml", "w") as f:
    f.writelines(f"C{i:02d}: CODE-{i:02d}\n" for i in range(50))


def schema(n):
    props = {f"f{i:03d}": {"type": "number", "minimum": 0} if i % 5 == 3 else {"type": "string"} for i in range(n)}
    line = {"code": {"type": "string", "minLength": 1}, "name": {"type": "string"},
            "qty": {"type": "number", "exclusiveMinimum": 0}, "price": {"type": "number", "minimum": 0},
            "kind": {"type": "string"}, "total": {"type": "number", "minimum": 0}}
    props["lines"] = {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                 "required": ["code", "qty"], "properties": line}}
    return {"type": "object", "additionalProperties": False, "required": ["f000"], "properties": props}


def rule(i):
    return [f'"$.data.s{i:03d}"', f'"trim($.data.s{i:03d})"', f"\"lookup('codes', $.data.c{i:03d}, 'NONE')\"",
            f'"round(decimal($.data.n{i:03d}), 2)"', f"\"upper(coalesce($.data.s{i:03d}, 'X'))\""][i % 5]


def mapping(n):
    lines = [f"flow: scale{n}", "on:", "  event: scale.test", "target:", "  connector: erp",
             "  operation: create_sales_order", f"  schema: scale{n}", 'order_key: "$.data.s000"', "fields:"]
    lines += [f"  f{i:03d}: {rule(i)}" for i in range(n)]
    lines += ["lines:", "  into: lines", '  from: "$.data.Lines"', '  when: "decimal(item.Quantity) > 0"', "  fields:",
              '    code: { value: "trim(item.ProductCode)", required: true }',
              '    name: "trim(coalesce(item.Description, item.Name))"',
              '    qty: "decimal(item.Quantity)"',
              '    price: "round(decimal(item.UnitPrice), 2)"',
              "    kind: \"lookup('codes', item.Kind, 'NONE')\"",
              '    total: "round(decimal(item.Quantity) * decimal(item.UnitPrice) * (1 - coalesce(decimal(item.Discount), 0) / 100), 2)"']
    return "\n".join(lines) + "\n"


for n in (25, 50, 100):
    with open(f"{out}/schemas/scale{n}.json", "w") as f:
        json.dump(schema(n), f)
    with open(f"{out}/mappings/scale{n}.yaml", "w") as f:
        f.write(mapping(n))


def event(count):
    data = {}
    for i in range(100):
        data[f"s{i:03d}"] = f" value {i} "
        data[f"c{i:03d}"] = f"C{i % 50:02d}"
        data[f"n{i:03d}"] = str(round(random.uniform(0, 1000), 3))
    data["Lines"] = []
    for j in range(count):
        line = {"ProductCode": f"SKU-{j}", "Name": f"Item {j}", "Quantity": random.randint(1, 20),
                "UnitPrice": f"{random.uniform(1, 500):.2f}", "Kind": f"C{j % 50:02d}"}
        discount = random.choice([None, 5, 10])
        if discount is not None:
            line["Discount"] = discount
        data["Lines"].append(line)
    return {"data": data}


for count in (0, 10, 50):
    with open(f"{out}/event{count}.json", "w") as f:
        json.dump(event(count), f)
print(f"written to {out}")
