//! `testudo bundle create|info|extract`: RAUC-compatible update bundles.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use testudo_updater::bundle::{self, BundleSpec};
use testudo_updater::signature::{AllowedSigner, CheckPurpose, Keyring, Signer};
use testudo_updater::BundleFormat;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BundleCommand {
    /// Create a signed bundle from images.
    Create(CreateArgs),
    /// Verify a bundle (signature and every payload byte); print manifest and signer.
    Info(InfoArgs),
    /// Verify a bundle and extract its images and manifest into DIR.
    Extract(ExtractArgs),
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// Must equal the target system's system.conf `compatible`.
    #[arg(long)]
    compatible: String,
    /// Bundle version (dotted numbers).
    #[arg(long)]
    version: String,
    /// SLOTCLASS=FILE, e.g. rootfs=build/rootfs.ext4 (repeatable).
    #[arg(long = "image", required = true)]
    images: Vec<String>,
    /// Signer certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Signer private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Intermediate CA certificate to embed (repeatable).
    #[arg(long = "intermediate")]
    intermediates: Vec<PathBuf>,
    /// Bundle format.
    #[arg(long, default_value = "verity", value_parser = ["verity", "plain"])]
    format: String,
    /// `[update] description=`.
    #[arg(long)]
    description: Option<String>,
    /// `[update] build=`.
    #[arg(long)]
    build: Option<String>,
    /// Output bundle.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// Trusted CA certificates (PEM).
    #[arg(long)]
    keyring: PathBuf,
    /// Signer purpose check, as RAUC's check-purpose.
    #[arg(long, default_value = "smimesign", value_parser = ["smimesign", "codesign", "any"])]
    check_purpose: String,
    /// Only accept a signer with this certificate common name (repeatable).
    #[arg(long = "allowed-signer-cn")]
    allowed_signer_cn: Vec<String>,
}

impl VerifyArgs {
    fn keyring(&self) -> anyhow::Result<Keyring> {
        let purpose: CheckPurpose = self.check_purpose.parse()?;
        let mut keyring = Keyring::load(&self.keyring, purpose)?;
        for cn in &self.allowed_signer_cn {
            keyring.allow_signer(AllowedSigner::CommonName(cn.clone()));
        }
        Ok(keyring)
    }
}

#[derive(Debug, clap::Args)]
struct InfoArgs {
    #[command(flatten)]
    verify: VerifyArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The bundle.
    bundle: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ExtractArgs {
    #[command(flatten)]
    verify: VerifyArgs,
    /// The bundle.
    bundle: PathBuf,
    /// Output directory (created; must not contain files of the same names).
    dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        BundleCommand::Create(args) => create(args),
        BundleCommand::Info(args) => info(args),
        BundleCommand::Extract(args) => extract(args),
    }
}

fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let mut images = Vec::new();
    for image in &args.images {
        let (class, path) = image
            .split_once('=')
            .with_context(|| format!("--image {image:?} is not SLOTCLASS=FILE"))?;
        images.push((class.to_string(), PathBuf::from(path)));
    }
    let mut spec = BundleSpec::new(&args.compatible, &args.version, images);
    spec.format = args.format.parse::<BundleFormat>()?;
    spec.description = args.description;
    spec.build = args.build;
    let signer = Signer {
        cert: args.cert,
        key: args.key,
        intermediates: args.intermediates,
    };
    let manifest = bundle::create(&spec, &signer, &args.output)
        .with_context(|| format!("creating bundle {}", args.output.display()))?
        .manifest;
    println!(
        "created {} ({} bundle, compatible {}, version {})",
        args.output.display(),
        manifest.format.as_str(),
        manifest.compatible,
        manifest.version.as_deref().unwrap_or("")
    );
    Ok(ExitCode::SUCCESS)
}

fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let keyring = args.verify.keyring()?;
    let verified = bundle::open(&args.bundle, &keyring).context("bundle rejected")?;
    if args.json {
        let value = serde_json::json!({
            "manifest": verified.manifest,
            "signer": verified.signer,
            "payload_size": verified.payload_size,
            "signature_size": verified.signature_size,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let m = &verified.manifest;
    println!("Compatible:    {}", m.compatible);
    println!("Version:       {}", m.version.as_deref().unwrap_or(""));
    if let Some(description) = &m.description {
        println!("Description:   {description}");
    }
    if let Some(build) = &m.build {
        println!("Build:         {build}");
    }
    println!("Bundle format: {}", m.format.as_str());
    if let Some(verity) = &m.verity {
        println!("Verity hash:   {}", hex_string(&verity.root_hash));
        println!("Verity size:   {}", verity.hash_tree_size);
    }
    for image in &m.images {
        println!("Image [{}]:", image.slot_class);
        println!("  Filename:    {}", image.filename);
        println!("  Checksum:    {}", hex_string(&image.sha256));
        println!("  Size:        {}", image.size);
    }
    println!("Signer:        {}", verified.signer.subject());
    for (index, cert) in verified.signer.chain.iter().enumerate() {
        println!(" {index} Subject: {}", cert.subject);
        println!("   Issuer:  {}", cert.issuer);
        println!("   SPKI sha256: {}", cert.spki_sha256);
        println!("   Not After:   {}", cert.not_after);
    }
    println!("Verified: signature and every payload byte");
    Ok(ExitCode::SUCCESS)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn extract(args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let keyring = args.verify.keyring()?;
    let verified = bundle::open(&args.bundle, &keyring).context("bundle rejected")?;
    verified.extract(&args.dir).with_context(|| {
        format!(
            "extracting {} into {}",
            args.bundle.display(),
            args.dir.display()
        )
    })?;
    println!(
        "extracted {} image(s) to {}",
        verified.manifest.images.len(),
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
