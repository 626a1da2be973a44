//! `oxidp role …`: roles, permissions, hierarchy, separation of duty and
//! assignments from the command line. Every change is audited with actor `cli`.

use clap::{Args, Subcommand};
use oxidp::audit::Actor;
use oxidp::rbac::{self, Subject};
use oxidp::state::AppState;

use super::output::Output;

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Who {
    /// A user, by id or username.
    #[arg(long)]
    user: Option<String>,
    /// A client (service account), by client id.
    #[arg(long)]
    client: Option<String>,
}

impl Who {
    fn subject(self) -> Subject {
        match (self.user, self.client) {
            (Some(u), _) => Subject::User(u),
            (None, Some(c)) => Subject::Client(c),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Create a role, optionally inheriting the permissions of parent roles.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A parent role whose permissions this role inherits; repeat for several.
        #[arg(long = "parent")]
        parents: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List roles with their parents and permissions, or show one.
    List {
        /// Show only this role.
        name: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a role (its assignments go with it; `admin` cannot be deleted).
    Delete {
        name: String,
        #[command(flatten)]
        output: Output,
    },
    /// Give a role a permission (namespace:resource:action). A new permission needs --audience.
    Grant {
        role: String,
        permission: String,
        /// The resource server (token audience) the new permission belongs to.
        #[arg(long)]
        audience: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Take a permission away from a role.
    Revoke {
        role: String,
        permission: String,
        #[command(flatten)]
        output: Output,
    },
    /// Make ROLE inherit PARENT's permissions (cycles are refused); --remove undoes it.
    Inherit {
        role: String,
        parent: String,
        #[arg(long)]
        remove: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Assign a role to a user or client.
    Assign {
        role: String,
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        output: Output,
    },
    /// Remove a role from a user or client.
    Unassign {
        role: String,
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        output: Output,
    },
    /// Declare roles mutually exclusive (static separation of duty), list the sets, or delete one.
    Exclusive {
        /// Name of the set (omit with --list).
        #[arg(long, required_unless_present = "list")]
        name: Option<String>,
        /// The roles no subject may combine (two or more).
        roles: Vec<String>,
        /// List the exclusive sets.
        #[arg(long, conflicts_with_all = ["name", "delete"])]
        list: bool,
        /// Delete the set given with --name.
        #[arg(long)]
        delete: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Show the roles assigned to a user or client and those it holds through inheritance.
    Show {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        output: Output,
    },
}

fn describe(role: &rbac::RoleView) -> String {
    let list = |v: &[String]| if v.is_empty() { "-".to_owned() } else { v.join(", ") };
    format!(
        "{}  {}\n  parents: {}\n  permissions: {}\n  effective: {}",
        role.name,
        role.description,
        list(&role.parents),
        list(&role.permissions),
        list(&role.effective_permissions)
    )
}

pub async fn run(state: &AppState, command: RoleCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match command {
        RoleCommand::Create {
            name,
            description,
            parents,
            output,
        } => {
            rbac::create_role(state.rbac_change(), &actor, &name, &description).await?;
            for parent in &parents {
                rbac::add_parent(state.rbac_change(), &actor, &name, parent).await?;
            }
            let role = rbac::show_role(&state.db, &name).await?;
            output.print(&role, || format!("created role {}", describe(&role)))
        }
        RoleCommand::List { name, output } => {
            let roles = match name {
                Some(name) => vec![rbac::show_role(&state.db, &name).await?],
                None => {
                    let mut all = Vec::new();
                    let mut after = String::new();
                    loop {
                        let page = rbac::list_roles(&state.db, &after, 200).await?;
                        let done = page.len() < 200;
                        after = page.last().map(|r| r.name.clone()).unwrap_or_default();
                        all.extend(page);
                        if done {
                            break all;
                        }
                    }
                }
            };
            output.print(&roles, || roles.iter().map(describe).collect::<Vec<_>>().join("\n"))
        }
        RoleCommand::Delete { name, output } => {
            rbac::delete_role(state.rbac_change(), &actor, &name).await?;
            output.print(&serde_json::json!({ "deleted": name }), || {
                format!("deleted role {name}")
            })
        }
        RoleCommand::Grant {
            role,
            permission,
            audience,
            output,
        } => {
            let added = rbac::grant(state.rbac_change(), &actor, &role, &permission, audience.as_deref()).await?;
            let view = rbac::show_role(&state.db, &role).await?;
            output.print(&view, || {
                let verb = if added { "granted" } else { "already had" };
                format!("{role} {verb} {permission}")
            })
        }
        RoleCommand::Revoke {
            role,
            permission,
            output,
        } => {
            if !rbac::revoke(state.rbac_change(), &actor, &role, &permission).await? {
                anyhow::bail!("the role {role} does not hold {permission}");
            }
            let view = rbac::show_role(&state.db, &role).await?;
            output.print(&view, || format!("revoked {permission} from {role}"))
        }
        RoleCommand::Inherit {
            role,
            parent,
            remove,
            output,
        } => {
            if remove {
                if !rbac::remove_parent(state.rbac_change(), &actor, &role, &parent).await? {
                    anyhow::bail!("{parent} is not a parent of {role}");
                }
            } else {
                rbac::add_parent(state.rbac_change(), &actor, &role, &parent).await?;
            }
            let view = rbac::show_role(&state.db, &role).await?;
            output.print(&view, || describe(&view))
        }
        RoleCommand::Assign { role, who, output } => {
            let subject = who.subject();
            rbac::assign(state.rbac_change(), &actor, subject.clone(), &role).await?;
            let view = rbac::assignments(&state.db, subject).await?;
            output.print(&view, || {
                format!("{} now holds: {}", view.subject, view.assigned.join(", "))
            })
        }
        RoleCommand::Unassign { role, who, output } => {
            let subject = who.subject();
            if !rbac::unassign(state.rbac_change(), &actor, subject.clone(), &role).await? {
                anyhow::bail!("the role {role} is not assigned");
            }
            let view = rbac::assignments(&state.db, subject).await?;
            output.print(&view, || {
                format!("{} now holds: {}", view.subject, view.assigned.join(", "))
            })
        }
        RoleCommand::Exclusive {
            name,
            roles,
            list,
            delete,
            output,
        } => {
            if list {
                let sets = rbac::list_exclusive_sets(&state.db).await?;
                return output.print(&sets, || {
                    sets.iter()
                        .map(|s| format!("{}: {}", s.name, s.roles.join(", ")))
                        .collect::<Vec<_>>()
                        .join("\n")
                });
            }
            let name = name.unwrap_or_default();
            if delete {
                rbac::delete_exclusive_set(state.rbac_change(), &actor, &name).await?;
                return output.print(&serde_json::json!({ "deleted": name }), || {
                    format!("deleted exclusive set {name}")
                });
            }
            let set = rbac::create_exclusive_set(state.rbac_change(), &actor, &name, &roles).await?;
            output.print(&set, || {
                format!("no one may hold more than one of: {}", set.roles.join(", "))
            })
        }
        RoleCommand::Show { who, output } => {
            let view = rbac::assignments(&state.db, who.subject()).await?;
            output.print(&view, || {
                format!(
                    "{}\n  assigned: {}\n  authorized (with inherited): {}",
                    view.subject,
                    view.assigned.join(", "),
                    view.authorized.join(", ")
                )
            })
        }
    }
}
