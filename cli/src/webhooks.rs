//! `spillway webhooks secret`: the signing secret an owner's receivers verify with, for operators
//! (an owner can fetch its own with `GET /webhook-secret`).
// A command-line tool answers on standard output.
#![allow(clippy::print_stdout)]

use std::error::Error;

use spillway_core::domain::Owner;

use crate::aws::AwsArgs;

/// `spillway webhooks` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// Print the Standard Webhooks secrets (`whsec_…`, newest first, one per line) that verify the
    /// deliveries and callbacks of one owner's jobs. Every owner's key is derived from the stack's
    /// secret, so a receiver given its owner's secret verifies nothing signed for another owner.
    Secret {
        /// The owner: an IAM principal's ARN (a role's sessions are the role).
        #[arg(long, value_name = "ARN", conflicts_with_all = ["jwt_issuer", "anonymous"])]
        iam: Option<String>,
        /// The owner: a JWT's issuer (`iss`), with --jwt-subject.
        #[arg(
            long,
            value_name = "URL",
            requires = "jwt_subject",
            conflicts_with = "anonymous"
        )]
        jwt_issuer: Option<String>,
        /// The owner: a JWT's subject (`sub`), with --jwt-issuer.
        #[arg(long, value_name = "SUB", requires = "jwt_issuer")]
        jwt_subject: Option<String>,
        /// The owner: every caller of a stack deployed with ApiAuth=NONE.
        #[arg(long)]
        anonymous: bool,
        /// The Secrets Manager secret holding the stack's signing secret; with --stack, its
        /// output WebhookSecretArn.
        #[arg(long, env = "SPILLWAY_WEBHOOK_SECRET_ARN", value_name = "ARN")]
        secret_arn: Option<String>,
        #[command(flatten)]
        aws: AwsArgs,
    },
}

/// Runs a `spillway webhooks` subcommand.
pub async fn run(command: WebhooksCommand) -> Result<(), Box<dyn Error>> {
    let WebhooksCommand::Secret {
        iam,
        jwt_issuer,
        jwt_subject,
        anonymous,
        secret_arn,
        mut aws,
    } = command;
    let owner = match (iam, jwt_issuer.zip(jwt_subject), anonymous) {
        (Some(arn), None, false) => Owner::iam(&arn),
        (None, Some((issuer, subject)), false) => Owner::jwt(&issuer, &subject),
        (None, None, true) => Owner::anonymous(),
        _ => {
            return Err(
                "name the owner: --iam ARN, --jwt-issuer and --jwt-subject, or --anonymous".into(),
            );
        }
    };
    let sdk = aws.deployment().await?;
    let arn = secret_arn
        .or(aws.webhook_secret_arn)
        .ok_or("name the stack's signing secret: --secret-arn ARN, or --stack NAME")?;
    let lookup = |name: &str| (name == "SPILLWAY_WEBHOOK_SECRET_ARN").then(|| arn.clone());
    let keys = spillway_core::app::webhook_keys(&sdk, lookup)
        .await?
        .ok_or("the secret holds no signing secret")?;
    eprintln!("owner: {owner}");
    for secret in keys.for_owner(&owner).secrets() {
        println!("{secret}");
    }
    Ok(())
}
