//! Salesforce outbound messages: a SOAP `notifications` envelope with up to 100 `Notification`s.
//!
//! There is no signature; the `OrganizationId` must be on the source's allow-list. Each
//! notification becomes one event whose data is
//! `{"OrganizationId", "ActionId", "NotificationId", "object", "data": {field: value}}` (the
//! sObject's fields under `data`, where the shipped mappings read them) and whose id is the
//! notification `Id`. The optional `SessionId` is a credential: it is dropped from the
//! data and redacted from the stored raw body. Salesforce redelivers for 24 h until it gets the
//! `Ack` below.

use roxmltree::{Document, Node};
use serde_json::{Map, Value};

use super::error::IngestError;

const OUTBOUND_NS: &str = "http://soap.sforce.com/2005/09/outbound";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// Salesforce's documented maximum per message.
pub const MAX_NOTIFICATIONS: usize = 100;

/// The reply that tells Salesforce the message was received.
pub const ACK: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
    r#"<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">"#,
    r#"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#
);

/// One parsed message.
#[derive(Debug)]
pub struct Message {
    pub organization_id: String,
    /// (notification id, event data)
    pub notifications: Vec<(String, Value)>,
}

pub fn parse(xml: &str) -> Result<Message, IngestError> {
    let malformed = |why: &str| IngestError::MalformedBody(format!("SOAP message: {why}"));
    let doc = Document::parse(xml).map_err(|e| malformed(&e.to_string()))?;
    let root = doc
        .descendants()
        .find(|n| n.has_tag_name((OUTBOUND_NS, "notifications")))
        .ok_or_else(|| malformed("no notifications element"))?;
    let text_of = |name: &str| child(root, name).and_then(|n| n.text()).map(str::to_owned);
    let organization_id =
        text_of("OrganizationId").ok_or_else(|| malformed("no OrganizationId"))?;
    let action_id = text_of("ActionId").unwrap_or_default();

    let mut notifications = Vec::new();
    for node in root
        .children()
        .filter(|n| n.has_tag_name((OUTBOUND_NS, "Notification")))
    {
        let id = child(node, "Id")
            .and_then(|n| n.text())
            .ok_or_else(|| malformed("a Notification has no Id"))?;
        let sobject =
            child(node, "sObject").ok_or_else(|| malformed("a Notification has no sObject"))?;
        let object = sobject
            .attribute((XSI_NS, "type"))
            .map(|t| t.rsplit(':').next().unwrap_or(t).to_owned())
            .unwrap_or_default();
        let mut fields = Map::new();
        for field in sobject.children().filter(Node::is_element) {
            let nil = field.attribute((XSI_NS, "nil")) == Some("true");
            let value = match field.text() {
                Some(text) if !nil => Value::String(text.to_owned()),
                _ => Value::Null,
            };
            fields.insert(field.tag_name().name().to_owned(), value);
        }
        let data = serde_json::json!({
            "OrganizationId": organization_id,
            "ActionId": action_id,
            "NotificationId": id,
            "object": object,
            "data": fields,
        });
        notifications.push((id.to_owned(), data));
    }
    if notifications.is_empty() {
        return Err(malformed("no Notification"));
    }
    if notifications.len() > MAX_NOTIFICATIONS {
        return Err(malformed("more than 100 notifications"));
    }
    Ok(Message {
        organization_id,
        notifications,
    })
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// The raw body with every `SessionId` element's content replaced, whatever its namespace
/// prefix (`<SessionId>`, `<out:SessionId>`), so no credential is stored. The elements are
/// found by parsing, not by matching text.
pub fn redact_session_id(xml: &str) -> String {
    let Ok(doc) = Document::parse(xml) else {
        return xml.to_owned(); // unparsable bodies are refused before they are stored
    };
    let mut inner: Vec<std::ops::Range<usize>> = doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "SessionId")
        .filter_map(|n| {
            let range = n.range();
            let raw = &xml[range.clone()];
            let open_end = range.start + raw.find('>')? + 1;
            let close_start = range.start + raw.rfind("</")?;
            (open_end <= close_start).then_some(open_end..close_start)
        })
        .collect();
    inner.sort_by_key(|r| std::cmp::Reverse(r.start));
    let mut out = xml.to_owned();
    for range in inner {
        out.replace_range(range, "[redacted]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const TWO: &str = include_str!("../../tests/fixtures/salesforce_two_notifications.xml");

    #[test]
    fn splits_notifications_and_reads_fields() {
        let message = parse(TWO).unwrap();
        assert_eq!(message.organization_id, "00D000000000062EAA");
        assert_eq!(message.notifications.len(), 2);
        let (id, data) = &message.notifications[0];
        assert_eq!(id, "04l000000000001AAA");
        assert_eq!(data["object"], "Opportunity");
        assert_eq!(data["data"]["StageName"], "Closed Won");
        assert_eq!(data["data"]["Amount"], "15000.50");
        assert!(data.get("SessionId").is_none());
    }

    #[test]
    fn session_id_is_redacted() {
        let redacted = redact_session_id(TWO);
        assert!(!redacted.contains("00D000000000062!AQ0AQ"));
        assert!(redacted.contains("<SessionId>[redacted]</SessionId>"));
        // With a namespace prefix, and in CDATA: found by parsing, whatever the spelling.
        let prefixed = TWO
            .replace(
                "<notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\">",
                "<notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\" \
                 xmlns:out=\"http://soap.sforce.com/2005/09/outbound\">",
            )
            .replace("<SessionId>", "<out:SessionId>")
            .replace("</SessionId>", "</out:SessionId>");
        assert!(parse(&prefixed).is_ok());
        assert!(
            prefixed.contains("<out:SessionId>00D000000000062!AQ0AQ"),
            "the fixture has one"
        );
        let redacted = redact_session_id(&prefixed);
        assert!(!redacted.contains("00D000000000062!AQ0AQ"), "{redacted}");
        assert!(redacted.contains("<out:SessionId>[redacted]</out:SessionId>"));
        let cdata = TWO.replace(
            "<SessionId>00D000000000062!AQ0AQ",
            "<SessionId><![CDATA[00D000000000062!AQ0AQ",
        );
        let cdata = cdata.replacen("</SessionId>", "]]></SessionId>", 1);
        assert!(!redact_session_id(&cdata).contains("AQ0AQ"));
    }

    #[test]
    fn malformed_messages_are_rejected() {
        for bad in [
            "<x/>",
            "not xml",
            r#"<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>1</OrganizationId></notifications>"#,
        ] {
            assert!(
                matches!(parse(bad), Err(IngestError::MalformedBody(_))),
                "{bad}"
            );
        }
    }
}
