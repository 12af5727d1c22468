//! The sandbox connector: plays an ERP or a CRM inside the local store so that `handoff serve`
//! on its embedded defaults shows the whole loop on one machine. It records every document it
//! receives; as an ERP it finds-or-creates customers by code and orders by reference, and an
//! operator can advance an order (confirm, ship, invoice, pay, cancel), which makes the status
//! event the real ERP's poller would. Everything it shows is labelled as a sandbox.
//!
//! ```text
//! sled tree `sandbox`:
//!   <connector>\0<operation>\0<key>   record (JSON): id, document, received_ms, updates
//!   <connector>\0#                    last id handed out (u64 BE)
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Adapter, BoxFuture, Delivered, Delivery, Failure};
use crate::adapters::Class;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Erp,
    Crm,
}

/// A record the sandbox holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    pub id: String,
    pub operation: String,
    pub key: String,
    #[schema(value_type = Object)]
    pub document: Value,
    pub received_ms: i64,
    /// How many deliveries wrote it (an upsert or a CRM update counts each).
    pub writes: u32,
    /// Orders: the status the operator advanced it to.
    #[serde(default)]
    pub status: Option<String>,
}

pub struct Sandbox {
    name: String,
    role: Role,
    tree: Option<sled::Tree>,
}

/// Operator steps for a sandbox order, and the status each leads to.
pub const STEPS: [(&str, &str); 5] = [
    ("confirm", "confirmed"),
    ("ship", "shipped"),
    ("invoice", "invoiced"),
    ("pay", "paid"),
    ("cancel", "cancelled"),
];

impl Sandbox {
    pub fn open(db: &sled::Db, name: &str, role: Role) -> Result<Sandbox, sled::Error> {
        Ok(Sandbox {
            name: name.to_owned(),
            role,
            tree: Some(db.open_tree("sandbox")?),
        })
    }

    /// A sandbox without storage, for `handoff check`.
    pub fn detached(name: &str, role: Role) -> Sandbox {
        Sandbox {
            name: name.to_owned(),
            role,
            tree: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    fn tree(&self) -> Result<&sled::Tree, Failure> {
        self.tree
            .as_ref()
            .ok_or_else(|| Failure::new(Class::FixConfig, "the sandbox has no store"))
    }

    fn key(&self, operation: &str, key: &str) -> Vec<u8> {
        format!("{}\0{operation}\0{key}", self.name).into_bytes()
    }

    fn store_error(error: sled::Error) -> Failure {
        Failure::new(Class::Transient, format!("sandbox store: {error}"))
    }

    fn write(&self, delivery: Delivery<'_>) -> Result<Delivered, Failure> {
        let (key_field, creates) = match (self.role, delivery.operation) {
            (Role::Erp, "upsert_customer") => ("/code", false),
            (Role::Erp, "create_sales_order") => ("/reference", true),
            (Role::Crm, "update_opportunity") => ("/id", false),
            (role, operation) => {
                return Err(Failure::new(
                    Class::FixConfig,
                    format!("the sandbox {role:?} has no operation {operation:?}"),
                ));
            }
        };
        let key = delivery
            .match_key
            .map(str::to_owned)
            .or_else(|| {
                delivery
                    .document
                    .pointer(key_field)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                Failure::new(Class::FixData, format!("the document has no {key_field}"))
            })?;
        let tree = self.tree()?;
        let at = self.key(delivery.operation, &key);
        let request = format!("sandbox {} {key}", delivery.operation);
        let existing: Option<Record> = tree
            .get(&at)
            .map_err(Self::store_error)?
            .and_then(|raw| serde_json::from_slice(&raw).ok());
        let record = match existing {
            Some(record) if creates => {
                return Ok(Delivered {
                    external_id: Some(record.id.clone()),
                    request,
                    response: format!("found existing {}; not created again", record.id),
                });
            }
            Some(mut record) => {
                merge(&mut record.document, delivery.document);
                record.writes += 1;
                record
            }
            None => {
                let n = tree
                    .update_and_fetch(format!("{}\0#", self.name), |old| {
                        let last = old.map_or(0, |raw| {
                            u64::from_be_bytes(raw.try_into().unwrap_or_default())
                        });
                        Some((last + 1).to_be_bytes().to_vec())
                    })
                    .map_err(Self::store_error)?
                    .map_or(1, |raw| {
                        u64::from_be_bytes(raw.as_ref().try_into().unwrap_or_default())
                    });
                let prefix = match delivery.operation {
                    "upsert_customer" => "CUST",
                    "create_sales_order" => "SO",
                    _ => "REC",
                };
                Record {
                    id: format!("{prefix}{n:05}"),
                    operation: delivery.operation.to_owned(),
                    key: key.clone(),
                    document: delivery.document.clone(),
                    received_ms: chrono::Utc::now().timestamp_millis(),
                    writes: 1,
                    status: creates.then(|| "draft".to_owned()),
                }
            }
        };
        tree.insert(&at, serde_json::to_vec(&record).expect("records serialize"))
            .map_err(Self::store_error)?;
        Ok(Delivered {
            external_id: Some(record.id.clone()),
            request,
            response: format!("stored {} (write {})", record.id, record.writes),
        })
    }

    /// Every record of `operation`, in key order.
    pub fn records(&self, operation: &str) -> Result<Vec<Record>, sled::Error> {
        let Some(tree) = &self.tree else {
            return Ok(Vec::new());
        };
        let prefix = format!("{}\0{operation}\0", self.name);
        tree.scan_prefix(prefix)
            .map(|item| Ok(serde_json::from_slice(&item?.1).expect("records deserialize")))
            .collect()
    }

    /// Moves the order created for `reference` on by `step`; returns the order-status event data
    /// the ERP would send.
    pub fn advance(&self, reference: &str, step: &str) -> Result<Value, String> {
        if self.role != Role::Erp {
            return Err(format!(
                "{} is a CRM sandbox; only an ERP sandbox has orders",
                self.name
            ));
        }
        let status = STEPS
            .iter()
            .find(|(name, _)| *name == step)
            .map(|(_, status)| *status)
            .ok_or_else(|| {
                format!("unknown step {step:?}; use confirm, ship, invoice, pay or cancel")
            })?;
        let tree = self.tree.as_ref().ok_or("the sandbox has no store")?;
        let at = self.key("create_sales_order", reference);
        let raw = tree
            .get(&at)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the sandbox ERP has no order for {reference:?}"))?;
        let mut record: Record = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
        record.status = Some(status.to_owned());
        record.writes += 1;
        tree.insert(&at, serde_json::to_vec(&record).expect("records serialize"))
            .map_err(|e| e.to_string())?;
        let mut event = json!({
            "reference": reference,
            "order_id": record.id,
            "number": record.id,
            "status": status,
            "changed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "sequence": record.writes,
            "sandbox": true,
        });
        if status == "shipped" {
            event["tracking_number"] = json!(format!("SANDBOX-{}", record.id));
        }
        if status == "invoiced" {
            event["invoice_number"] = json!(format!("INV-{}", record.id));
            event["invoice_amount"] = record.document.get("total").cloned().unwrap_or(Value::Null);
        }
        Ok(event)
    }
}

/// Copies the fields of `update` over `document` (objects merge key by key).
fn merge(document: &mut Value, update: &Value) {
    match (document, update) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (slot, value) => *slot = value.clone(),
    }
}

impl Adapter for Sandbox {
    fn kind(&self) -> &'static str {
        "sandbox"
    }

    fn send<'a>(&'a self, delivery: Delivery<'a>) -> BoxFuture<'a, Result<Delivered, Failure>> {
        Box::pin(async move { self.write(delivery) })
    }

    fn updates_found(&self, operation: &str) -> bool {
        operation != "create_sales_order"
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, Failure>> {
        Box::pin(async move {
            self.tree()?;
            Ok(format!("sandbox {:?} is in the local store", self.role))
        })
    }
}
