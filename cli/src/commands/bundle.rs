//! `testudo bundle create|delta|encrypt|info|extract`: RAUC-compatible update bundles.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use testudo_updater::bundle::{self, BundleSpec};
use testudo_updater::crypt::{self, Decryptor};
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
    /// Make a delta bundle: a signed patch from the images of one full bundle to another's.
    Delta(DeltaArgs),
    /// Encrypt a crypt bundle's signature for its recipients, as `rauc encrypt` does: only a
    /// holder of a recipient's private key can then read it.
    Encrypt(EncryptArgs),
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
    #[command(flatten)]
    signer: SignerArgs,
    /// Bundle format.
    /// (crypt: verity over an encrypted payload; `bundle encrypt` then envelopes it).
    #[arg(long, default_value = "verity", value_parser = ["verity", "plain", "crypt"])]
    format: String,
    /// `[update] description=`.
    #[arg(long)]
    description: Option<String>,
    /// `[update] build=`.
    #[arg(long)]
    build: Option<String>,
    /// Add RAUC's block hash index to every image of whole 4 KiB blocks
    /// (`adaptive=block-hash-index;`).
    #[arg(long)]
    adaptive: bool,
    /// Output bundle.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

#[derive(Debug, clap::Args)]
struct DeltaArgs {
    #[command(flatten)]
    verify: VerifyArgs,
    /// The full bundle a device has installed (the base).
    #[arg(long)]
    from: PathBuf,
    /// The full bundle to update it to.
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    signer: SignerArgs,
    /// Output bundle.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

#[derive(Debug, clap::Args)]
struct EncryptArgs {
    #[command(flatten)]
    verify: VerifyArgs,
    /// A recipient's certificate (PEM; every certificate in the file; repeatable).
    #[arg(long = "recipient", required = true)]
    recipients: Vec<PathBuf>,
    /// The crypt bundle (`bundle create --format crypt`, or `rauc bundle`).
    bundle: PathBuf,
    /// Output bundle.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

/// The identity that opens a bundle encrypted for it (RAUC's system.conf `[encryption]`).
#[derive(Debug, clap::Args)]
struct DecryptArgs {
    /// Private key (PEM) of a recipient the bundle is encrypted for.
    #[arg(long)]
    decrypt_key: Option<PathBuf>,
    /// Its certificate (PEM).
    #[arg(long, requires = "decrypt_key")]
    decrypt_cert: Option<PathBuf>,
}

impl DecryptArgs {
    fn decryptor(&self) -> anyhow::Result<Option<Decryptor>> {
        Ok(match &self.decrypt_key {
            Some(key) => Some(Decryptor::load(key, self.decrypt_cert.as_deref())?),
            None => None,
        })
    }
}

/// Who signs a bundle.
#[derive(Debug, clap::Args)]
struct SignerArgs {
    /// Signer certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Signer private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Intermediate CA certificate to embed (repeatable).
    #[arg(long = "intermediate")]
    intermediates: Vec<PathBuf>,
}

impl SignerArgs {
    fn signer(self) -> Signer {
        Signer {
            cert: self.cert,
            key: self.key,
            intermediates: self.intermediates,
        }
    }
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
    #[command(flatten)]
    decrypt: DecryptArgs,
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
    #[command(flatten)]
    decrypt: DecryptArgs,
    /// The bundle.
    bundle: PathBuf,
    /// Output directory (created if missing; every file of the payload goes in, none over an
    /// existing one).
    dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        BundleCommand::Create(args) => create(args),
        BundleCommand::Delta(args) => delta(args),
        BundleCommand::Encrypt(args) => encrypt(args),
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
    spec.adaptive = args.adaptive;
    let signer = args.signer.signer();
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

fn delta(args: DeltaArgs) -> anyhow::Result<ExitCode> {
    let keyring = args.verify.keyring()?;
    let open = |path: &PathBuf| {
        bundle::open(path, &keyring).with_context(|| format!("bundle {} rejected", path.display()))
    };
    let (from, to) = (open(&args.from)?, open(&args.to)?);
    let signer = args.signer.signer();
    eprintln!(
        "computing the patch from {} to {} (about 6x the image in memory)",
        from.manifest.version.as_deref().unwrap_or("?"),
        to.manifest.version.as_deref().unwrap_or("?")
    );
    let created = testudo_updater::delta::create(&from, &to, &signer, &args.output)
        .with_context(|| format!("creating delta bundle {}", args.output.display()))?;
    let size = std::fs::metadata(&args.output)
        .with_context(|| format!("reading {}", args.output.display()))?
        .len();
    let full = std::fs::metadata(&args.to)
        .with_context(|| format!("reading {}", args.to.display()))?
        .len();
    println!(
        "created {} (delta {} -> {}: {size} bytes, {:.2}% of the full bundle's {full})",
        args.output.display(),
        from.manifest.version.as_deref().unwrap_or(""),
        to.manifest.version.as_deref().unwrap_or(""),
        size as f64 * 100.0 / full.max(1) as f64
    );
    for image in &created.manifest.images {
        let target = image.delta.as_ref().map_or(0, |delta| delta.target.size);
        println!(
            "  {}: patch {} bytes for an image of {target}",
            image.slot_class, image.size
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn encrypt(args: EncryptArgs) -> anyhow::Result<ExitCode> {
    let keyring = args.verify.keyring()?;
    let recipients = crypt::encrypt_bundle(&args.bundle, &keyring, &args.recipients, &args.output)
        .with_context(|| format!("encrypting {}", args.bundle.display()))?;
    println!(
        "encrypted {} for {recipients} recipient(s): {}",
        args.bundle.display(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let keyring = args.verify.keyring()?;
    let decryptor = args.decrypt.decryptor()?;
    let verified =
        bundle::open_with(&args.bundle, &keyring, decryptor.as_ref()).context("bundle rejected")?;
    if args.json {
        let value = serde_json::json!({
            "manifest": verified.manifest,
            "signer": verified.signer,
            "payload_size": verified.payload_size,
            "signature_size": verified.signature_size,
            "encrypted_cms": verified.encrypted_cms,
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
    match (m.format, verified.encrypted_cms) {
        (BundleFormat::Crypt, true) => println!("Bundle format: crypt [encrypted CMS]"),
        (BundleFormat::Crypt, false) => println!("Bundle format: crypt [unencrypted CMS]"),
        (format, _) => println!("Bundle format: {}", format.as_str()),
    }
    if let Some(verity) = &m.verity {
        println!("Verity hash:   {}", hex_string(&verity.root_hash));
        println!("Verity size:   {}", verity.hash_tree_size);
    }
    if let Some(hooks) = &m.hooks_filename {
        println!("Hook program:  {hooks}");
    }
    println!("Hooks:         {}", joined(&m.hooks));
    if let Some(handler) = &m.handler {
        println!("Handler:       {}", handler.filename);
        if let Some(args) = &handler.args {
            println!("Handler args:  {args}");
        }
    }
    for image in &m.images {
        println!("Image [{}]:", image.slot_class);
        if let Some(variant) = &image.variant {
            println!("  Variant:     {variant}");
        }
        println!("  Filename:    {}", image.filename);
        if image.is_casync_index() {
            println!("  (a casync index: checksum and size are of the image it indexes)");
        }
        println!("  Checksum:    {}", hex_string(&image.sha256));
        println!("  Size:        {}", image.size);
        println!("  Hooks:       {}", joined(&image.hooks));
        if let Some(adaptive) = &image.adaptive {
            println!("  Adaptive:    {adaptive}");
        }
        if let Some(delta) = &image.delta {
            for (end, identity) in [
                ("Delta base:  ", &delta.base),
                ("Delta target:", &delta.target),
            ] {
                println!(
                    "  {end} sha256 {} ({} bytes), verity root {}",
                    hex_string(&identity.sha256),
                    identity.size,
                    hex_string(&identity.verity_root)
                );
            }
        }
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

/// `items` separated by spaces, as `rauc info` lists hooks.
fn joined(items: &[impl std::fmt::Display]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn extract(args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let keyring = args.verify.keyring()?;
    let decryptor = args.decrypt.decryptor()?;
    let verified =
        bundle::open_with(&args.bundle, &keyring, decryptor.as_ref()).context("bundle rejected")?;
    let files = verified.extract(&args.dir).with_context(|| {
        format!(
            "extracting {} into {}",
            args.bundle.display(),
            args.dir.display()
        )
    })?;
    println!(
        "extracted {files} file(s) ({} image(s)) to {}",
        verified.manifest.images.len(),
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
