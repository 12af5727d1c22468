//! A product as an ERP that masters products reports it (the ERP → CRM product sync).

use serde_json::{Value, json};

/// One product as the CRM should see it, as of its newest change.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductChange {
    pub code: String,
    pub name: String,
    pub active: bool,
    /// The template's list price, as Tryton's decimal text.
    pub list_price: String,
    /// The unit it is sold in (`Unit`, `Box of 12`).
    pub sale_unit: String,
    /// The newest write or create of the product or its template.
    pub changed_at: String,
}

impl ProductChange {
    /// The same change always has the same id.
    pub fn event_id(&self) -> String {
        format!("product:{}:{}", self.code, self.changed_at)
    }

    /// The `product.changed` event's data.
    pub fn data(&self) -> Value {
        json!({
            "code": self.code, "name": self.name, "active": self.active,
            "list_price": self.list_price, "sale_unit": self.sale_unit,
            "changed_at": self.changed_at,
        })
    }
}

/// What one ask found, and the cursor to store once its events are durable.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductsChanged {
    /// Oldest change first.
    pub changes: Vec<ProductChange>,
    /// The newest change seen (the next ask starts there).
    pub cursor: Option<String>,
}

/// One product's price under one price list in one currency, as the ERP computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceChange {
    pub code: String,
    /// `standard` (the list price, no price list) or the price list's name.
    pub price_list: String,
    pub currency: String,
    /// Per sale unit, for quantity 0, as the ERP's decimal text.
    pub price: String,
    /// Whether the product is active (an inactive one's entries are deactivated).
    pub active: bool,
}

impl PriceChange {
    /// Product, price list and currency: one CRM price book entry.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.code, self.price_list, self.currency)
    }

    /// The `product_price.changed` event's data.
    pub fn data(&self) -> Value {
        json!({
            "code": self.code, "price_list": self.price_list, "currency": self.currency,
            "price": self.price, "active": self.active,
        })
    }
}
