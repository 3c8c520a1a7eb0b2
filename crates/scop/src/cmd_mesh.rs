//! `scop mesh`: the internal CA and the compartments' certificates of a
//! deployment made by `scop init`.
//!
//! `scop mesh rotate` issues every compartment a new key and certificate
//! from the current CA; with `--ca` it replaces the CA itself in the three
//! steps of `scop_mesh::MeshDir` (trust the old and the new CA, re-issue
//! every certificate from the new one, trust the new one alone). Between
//! steps, a running supervisor restarts the mail compartments and the
//! command waits until they run again, so no compartment ever meets a
//! peer whose certificate it does not trust. Without a supervisor the
//! steps follow each other at once and take effect at the next `scop up`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use scop_mesh::{MeshDir, Validity};

use crate::config::{self, Config};

/// How long a step waits for the restarted compartments.
const RESTART_WAIT: Duration = Duration::from_secs(90);

/// `scop mesh ...`
#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Show the mesh CA and each compartment's certificate, with their
    /// expiry dates, and whether a CA rotation is in progress.
    Status(MeshArgs),
    /// Give every compartment a new key and certificate (from the current
    /// CA; with --ca, from a new CA that replaces it), restarting the
    /// compartments of a running `scop up` so they use them.
    ///
    /// Example: scop mesh rotate --dir scop --ca
    Rotate(RotateArgs),
}

/// The deployment.
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// The deployment directory (from `scop init`).
    #[arg(long, default_value = "scop", env = "SCOP_DIR")]
    dir: PathBuf,
}

/// `scop mesh rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    deployment: MeshArgs,
    /// Replace the CA too (three steps; a rotation left half done by an
    /// earlier failure is finished).
    #[arg(long)]
    ca: bool,
    /// Validity of the new certificates, in days.
    #[arg(long, default_value_t = crate::cmd_init::MESH_LEAF_DAYS, value_name = "DAYS")]
    days: u64,
    /// Validity of a new CA, in days.
    #[arg(long, default_value_t = crate::cmd_init::MESH_CA_DAYS, value_name = "DAYS")]
    ca_days: u64,
}

pub fn run(cmd: MeshCommand) -> Result<ExitCode> {
    match cmd {
        MeshCommand::Status(args) => status(&args),
        MeshCommand::Rotate(args) => rotate(&args),
    }
}

/// The deployment's directory (absolute) and mesh.
fn open(args: &MeshArgs) -> Result<(PathBuf, MeshDir)> {
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("resolve {}", args.dir.display()))?;
    let config = Config::load(&dir)?;
    let Some(mesh) = &config.mail.mesh else {
        bail!(
            "{} runs its mail service as one process, without a mesh",
            dir.display()
        );
    };
    Ok((dir.clone(), MeshDir::new(config::resolve(&dir, mesh))))
}

fn days(n: u64) -> Result<Validity> {
    // A minute back, so a peer whose clock is slightly behind accepts it.
    let start = SystemTime::now() - Duration::from_secs(60);
    Ok(Validity::starting(start, Duration::from_secs(n * 86_400))?)
}

/// The certificate's subject and expiry, from its PEM file.
fn describe(path: &Path) -> Result<String> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(format!(
        "serial {}, expires {}",
        cert.raw_serial_as_string(),
        cert.validity().not_after
    ))
}

fn status(args: &MeshArgs) -> Result<ExitCode> {
    let (_, mesh) = open(args)?;
    println!("CA         {}", describe(&mesh.ca_cert_path())?);
    if mesh.previous_ca_path().exists() {
        println!(
            "previous   {} (a CA rotation is in progress: `scop mesh rotate --ca` finishes it)",
            describe(&mesh.previous_ca_path())?
        );
    }
    for role in mesh.roles() {
        println!("{:<10} {}", role.name(), describe(&mesh.cert_path(role))?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The mail compartments of a running supervisor restart and run again
/// (false when no supervisor runs).
fn restart(dir: &Path, what: &str) -> Result<bool> {
    let names: Vec<&str> = crate::cmd_compartment::MAIL_ROLES
        .iter()
        .map(|r| r.name())
        .collect();
    let restarted = crate::cmd_up::restart_and_wait(dir, &names, RESTART_WAIT)
        .with_context(|| format!("restart the compartments after {what}"))?;
    if restarted {
        println!("  compartments restarted: {}", names.join(" "));
    }
    Ok(restarted)
}

fn rotate(args: &RotateArgs) -> Result<ExitCode> {
    let (dir, mesh) = open(&args.deployment)?;
    let leaf = days(args.days)?;
    let running;
    if args.ca {
        if mesh.previous_ca_path().exists() {
            println!("a CA rotation is in progress: finishing it");
        } else {
            mesh.begin_ca_rotation(days(args.ca_days)?)
                .context("make the new CA")?;
            println!("step 1/3: new CA made; the compartments trust the old and the new one");
        }
        // Every compartment trusts both CAs before any gets a certificate
        // from the new one (also when an interrupted run is finished).
        running = restart(&dir, "step 1")?;
        let roles = mesh
            .reissue_all(leaf)
            .context("issue the new certificates")?;
        println!(
            "step 2/3: {} certificates issued by the new CA",
            roles.len()
        );
        if running {
            restart(&dir, "step 2")?;
        }
        mesh.finish_ca_rotation()
            .context("drop the old CA from the trust bundle")?;
        println!("step 3/3: the old CA is no longer trusted");
        if running {
            restart(&dir, "step 3")?;
        }
    } else {
        let roles = mesh
            .reissue_all(leaf)
            .context("issue the new certificates")?;
        println!("{} certificates issued by the current CA", roles.len());
        running = restart(&dir, "the new certificates")?;
    }
    if !running {
        println!("no running supervisor: the certificates take effect at the next `scop up`");
    }
    Ok(ExitCode::SUCCESS)
}
