#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! Testing your own service against nsq-server-lite, with no nsqd installed.
//!
//! Run its tests with:
//!
//! ```text
//! cargo test -p nsq-examples --example testing
//! ```
//!
//! and the service once with `cargo run -p nsq-examples --example testing`.
//!
//! In your project, nsq-server-lite is a dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! nsq-server-lite = { git = "<this repository>", rev = "<commit>" }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! The pattern: one broker per test (`Nsqd::start()` binds free loopback ports and takes
//! well under a millisecond), the service pointed at `nsqd.tcp_addr()`, and assertions on
//! what the service published and on the broker's `stats()`: here, that every order was
//! finished and nothing is left in flight.

use std::error::Error;

use futures::StreamExt;
use nsq_client::{Channel, Consumer, Producer, ProducerConfig, Topic};

/// The service under test: for every order on `orders`, an invoice on `invoices`. An order
/// is finished only once its invoice was acknowledged, so a crash in between redelivers it.
pub async fn invoicer(nsqd: String) -> Result<(), Box<dyn Error + Send + Sync>> {
    let producer = Producer::new(nsqd.clone(), ProducerConfig::default())?;
    let invoices = Topic::new("invoices")?;
    let mut orders = Consumer::builder(Topic::new("orders")?, Channel::new("invoicer")?)
        .nsqd(nsqd)
        .build()?;
    while let Some(order) = orders.next().await {
        let order_text = String::from_utf8_lossy(order.body()).into_owned();
        producer
            .publish(&invoices, format!("invoice for {order_text}"))
            .await?;
        order.finish()?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let nsqd = nsq_server_lite::Nsqd::start().await?;
    let service = tokio::spawn(invoicer(nsqd.tcp_addr().to_string()));
    let producer = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default())?;
    producer.publish(&Topic::new("orders")?, "order 1").await?;
    let mut invoices = Consumer::builder(Topic::new("invoices")?, Channel::new("print")?)
        .nsqd(nsqd.tcp_addr().to_string())
        .build()?;
    let invoice = invoices.next().await.ok_or("no invoice")?;
    println!(
        "the service answered: {:?}",
        String::from_utf8_lossy(invoice.body())
    );
    invoice.finish()?;
    println!("its tests: cargo test -p nsq-examples --example testing");
    service.abort();
    nsqd.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use nsq_client::{Channel, Consumer, Producer, ProducerConfig, Topic};
    use nsq_server_lite::Nsqd;

    #[tokio::test]
    async fn every_order_gets_one_invoice_and_is_finished() {
        let nsqd = Nsqd::start().await.unwrap();
        let addr = nsqd.tcp_addr().to_string();
        let service = tokio::spawn(super::invoicer(addr.clone()));

        let producer = Producer::new(addr.clone(), ProducerConfig::default()).unwrap();
        let orders = Topic::new("orders").unwrap();
        for i in 0..3 {
            producer
                .publish(&orders, format!("order {i}"))
                .await
                .unwrap();
        }
        let mut invoices =
            Consumer::builder(Topic::new("invoices").unwrap(), Channel::new("t").unwrap())
                .nsqd(addr)
                .build()
                .unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let invoice = tokio::time::timeout(Duration::from_secs(10), invoices.next())
                .await
                .expect("an invoice within 10 s")
                .expect("the consumer runs");
            seen.push(String::from_utf8_lossy(invoice.body()).into_owned());
            invoice.finish().unwrap();
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "invoice for order 0",
                "invoice for order 1",
                "invoice for order 2"
            ]
        );

        // Each order finished once its invoice was acknowledged: the broker says so.
        let finished = || {
            let stats = nsqd.stats();
            let channel = stats
                .channel("orders", "invoicer")
                .expect("the service subscribed");
            (
                channel.depth,
                channel.in_flight_count,
                channel.message_count,
            )
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while finished() != (0, 0, 3) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "orders left: {:?}",
                finished()
            );
            tokio::task::yield_now().await;
        }
        service.abort();
        nsqd.shutdown().await;
    }
}
