//! `oxidp commerce …`: run the commerce resource server (its own process and
//! database), migrate it, and administer sellers on its database. The CLI acts
//! as the operator `oxidp-cli` with `commerce:sellers:admin`.

use std::collections::BTreeSet;
use std::sync::Arc;

use clap::Subcommand;
use oxidp::clock::{Clock, SystemClock};
use oxidp::commerce::domain::catalog::{self, Contact, NewSeller, SellerView};
use oxidp::commerce::domain::{Limit, SellerKind, permissions};
use oxidp::config::Config;
use oxidp::resource_server::Principal;

use super::output::Output;

#[derive(Subcommand)]
pub enum CommerceCommand {
    /// Serve the commerce API (the default).
    Serve,
    /// Apply pending commerce database migrations and exit.
    Migrate,
    /// Manage sellers (on the commerce database).
    #[command(subcommand)]
    Seller(SellerCommand),
}

#[derive(Subcommand)]
pub enum SellerCommand {
    /// Register a seller.
    Create {
        #[arg(long)]
        name: String,
        /// INTERNAL (our own stock and shipping) or EXTERNAL (marketplace partner).
        #[arg(long, value_parser = parse_kind)]
        kind: SellerKind,
        /// Contact email address.
        #[arg(long)]
        email: String,
        /// Contact phone number.
        #[arg(long)]
        phone: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List sellers.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Make a subject (`sub` of its tokens) a member of a seller.
    AddMember {
        seller: String,
        sub: String,
        #[command(flatten)]
        output: Output,
    },
}

fn parse_kind(value: &str) -> Result<SellerKind, String> {
    match value.to_ascii_uppercase().as_str() {
        "INTERNAL" => Ok(SellerKind::Internal),
        "EXTERNAL" => Ok(SellerKind::External),
        _ => Err("expected INTERNAL or EXTERNAL".into()),
    }
}

fn operator() -> Principal {
    Principal {
        sub: "oxidp-cli".into(),
        client_id: "oxidp-cli".into(),
        permissions: BTreeSet::from([permissions::SELLERS_ADMIN.to_owned()]),
        exp: i64::MAX,
    }
}

fn show(seller: &SellerView) -> String {
    let members = if seller.members.is_empty() {
        "-".to_owned()
    } else {
        seller.members.join(", ")
    };
    format!(
        "{}  {}  {}  {}  members: {members}",
        seller.id,
        seller.kind.as_str(),
        seller.name,
        seller.contact.email
    )
}

pub async fn run(config: Config, command: Option<CommerceCommand>) -> anyhow::Result<()> {
    match command.unwrap_or(CommerceCommand::Serve) {
        CommerceCommand::Serve => serve(config).await,
        CommerceCommand::Migrate => {
            let db = oxidp::commerce::open_database(&config).await?;
            println!("commerce database ({}) is up to date", db.backend().name());
            Ok(())
        }
        CommerceCommand::Seller(command) => seller(&config, command).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = oxidp::commerce::CommerceApp::build(&config, Arc::new(SystemClock)).await?;
    let signals = oxidp::shutdown::Signals::watch();
    tracing::info!(
        bind = %config.commerce.bind,
        issuer = %config.commerce_issuer(),
        audience = %config.commerce_audience(),
        "commerce API listening"
    );
    app.run_until_signalled(signals).await?;
    Ok(())
}

async fn seller(config: &Config, command: SellerCommand) -> anyhow::Result<()> {
    let db = oxidp::commerce::open_database(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match command {
        SellerCommand::Create {
            name,
            kind,
            email,
            phone,
            output,
        } => {
            let seller = catalog::create_seller(
                &db,
                &operator(),
                NewSeller {
                    name,
                    kind,
                    contact: Contact { email, phone },
                },
                clock.now(),
            )
            .await?;
            output.print(&seller, || show(&seller))
        }
        SellerCommand::List { output } => {
            let mut all = Vec::new();
            let mut cursor = None;
            loop {
                let page = catalog::sellers(&db, cursor, Limit::parse(Some(100))?).await?;
                all.extend(page.items);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            output.print(&all, || all.iter().map(show).collect::<Vec<_>>().join("\n"))
        }
        SellerCommand::AddMember { seller, sub, output } => {
            let seller = catalog::set_member(&db, &operator(), seller, sub, true, clock.now()).await?;
            output.print(&seller, || show(&seller))
        }
    }
}
