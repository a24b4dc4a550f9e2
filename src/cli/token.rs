//! `token issue`: an API token signed with the service's key.

use super::{Service, config_dir, settings_for};

#[derive(clap::Subcommand)]
pub enum Action {
    /// Print a token signed with the service's key (from settings, or the secret the
    /// service generated under its data directory; created here when absent).
    Issue {
        /// Who the token is for (`sub`), e.g. jenkins-prod.
        #[arg(long)]
        subject: String,
        /// Scopes: profiles:read, builds:write, reports:read, admin (repeat or comma-separate).
        #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
        scope: Vec<String>,
        /// How long it is valid, e.g. 90d, 12h.
        #[arg(long, default_value = "90d")]
        ttl: humantime::Duration,
        #[command(flatten)]
        service: Service,
        /// Create the signing key under the data directory when there is none (for a
        /// service that has not started yet). Without it a missing key is an error: a
        /// token signed with a new key would be refused by the running service.
        #[arg(long)]
        create_secret: bool,
    },
}

/// Runs the command.
pub fn run(action: Action) -> anyhow::Result<()> {
    let Action::Issue {
        subject,
        scope: scopes,
        ttl,
        service,
        create_secret,
    } = action;
    let ttl: std::time::Duration = ttl.into();
    use crate::tokens::{Scope, TokenKeys};
    let (settings, data_dir) =
        settings_for(config_dir(service.config).as_deref(), service.data_dir)?;
    let key = data_dir.join("jwt-secret");
    let generated =
        settings.auth.jwt_secret.is_none() && settings.auth.jwt_public_key_file.is_none();
    anyhow::ensure!(
        !generated || create_secret || key.exists(),
        "no signing key at {}: a token signed with a new key would be refused by the service \
         (401). Give the service's data directory (with the shipped manifests: kubectl -n \
         autopilot exec deploy/jenkins-autopilot -- jenkins-autopilot token issue --subject \
         NAME --scope SCOPES --data-dir /var/lib/jenkins-autopilot), set auth.jwt_secret \
         (AUTOPILOT_AUTH__JWT_SECRET) as the service has it, or pass --create-secret for a \
         service that has not started yet",
        key.display()
    );
    let scopes = scopes
        .iter()
        .map(|s| s.trim().parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
    anyhow::ensure!(!ttl.is_zero(), "--ttl must be longer than 0s");
    let keys = TokenKeys::load(&settings.auth, &data_dir)?;
    let token = keys.issue(&subject, &scopes, ttl, chrono::Utc::now().timestamp())?;
    println!("{token}");
    Ok(())
}
