//! Device identity held in a TPM 2.0 (tested against swtpm).
//!
//! [`import_hmac_key`] puts the device's symmetric key into the TPM once: it becomes a keyed-hash
//! (HMAC-SHA256) object created under the storage root key (SRK: RSA 2048, persisted at
//! `0x81000001`) and persisted at a handle of the caller's choice. The object has `sign` set and is `fixedTPM` /
//! `fixedParent`, so the TPM refuses to unseal, duplicate or export it: after the import the key
//! exists only inside the TPM. [`TpmHmacSigner`] then computes SAS signatures with TPM2_HMAC.
//!
//! tss-esapi's `Context` is not `Send`, so each signer owns one on a dedicated thread and serves
//! requests over a channel. swtpm has no resource manager and only 3 transient slots, so every
//! transient object and session is flushed right after use.

use std::str::FromStr;
use std::sync::mpsc;
use std::sync::Mutex;

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::tss::TPM2_PERSISTENT_FIRST;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::structures::{
    CapabilityData, Digest, KeyedHashScheme, MaxBuffer, Public, PublicBuilder, PublicKeyRsa,
    PublicKeyedHashParameters, PublicRsaParametersBuilder, RsaExponent, SensitiveData,
    SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::Context;

use crate::error::{AgentError, Result};
use crate::sas::SasSigner;

/// Where the storage root key is persisted (the TCG/Azure convention).
pub const SRK_HANDLE: u32 = 0x8100_0001;
/// Default persistent handle for the device's SAS key.
pub const DEFAULT_KEY_HANDLE: u32 = 0x8100_0100;
/// Default persistent handle for the device certificate's ECDSA P-256 key (`x509` identity
/// with the key in the TPM).
pub const X509_KEY_HANDLE: u32 = 0x8100_0101;

pub(crate) fn tpm_err<'a>(
    operation: &'static str,
    tcti: &'a str,
) -> impl FnOnce(tss_esapi::Error) -> AgentError + 'a {
    move |source| AgentError::Tpm {
        operation,
        tcti: tcti.to_string(),
        source,
    }
}

/// Opens an ESAPI context for a TCTI string such as `swtpm:host=127.0.0.1,port=2321` or
/// `device:/dev/tpmrm0`.
pub fn open_context(tcti: &str) -> Result<Context> {
    let conf = TctiNameConf::from_str(tcti).map_err(tpm_err("parse TCTI", tcti))?;
    Context::new(conf).map_err(tpm_err("open context", tcti))
}

pub(crate) fn persistent(handle: u32, tcti: &str) -> Result<Persistent> {
    if handle < TPM2_PERSISTENT_FIRST {
        return Err(AgentError::TpmKey {
            handle,
            reason: "not a persistent handle (0x81xxxxxx)".into(),
        });
    }
    let handle =
        PersistentTpmHandle::new(handle).map_err(tpm_err("make persistent handle", tcti))?;
    Ok(Persistent::Persistent(handle))
}

/// Resolves a persistent handle to an ESAPI object, if something is stored there. Asks the TPM
/// which handles exist first, so a missing key is an answer, not a logged TPM error.
pub(crate) fn find_persistent(
    context: &mut Context,
    handle: u32,
    tcti: &str,
) -> Result<Option<ObjectHandle>> {
    let Persistent::Persistent(tpm_handle) = persistent(handle, tcti)?;
    let (data, _) = context
        .get_capability(CapabilityType::Handles, handle, 1)
        .map_err(tpm_err("list persistent handles", tcti))?;
    let present = match data {
        CapabilityData::Handles(list) => list.first().is_some_and(|h| u32::from(*h) == handle),
        _ => false,
    };
    if !present {
        return Ok(None);
    }
    context
        .tr_from_tpm_public(TpmHandle::Persistent(tpm_handle))
        .map(Some)
        .map_err(tpm_err("open persistent object", tcti))
}

pub(crate) fn srk_template(tcti: &str) -> Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_decrypt(true)
        .with_no_da(true)
        .build()
        .map_err(tpm_err("build SRK attributes", tcti))?;
    // RSA 2048, as the TCG provisioning guidance and Azure's aziot-tpmd use: DPS TPM attestation
    // can only wrap keys to an RSA SRK, so every path shares this one.
    let parameters = PublicRsaParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        RsaKeyBits::Rsa2048,
        RsaExponent::default(),
    )
    .build()
    .map_err(tpm_err("build SRK parameters", tcti))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(parameters)
        .with_rsa_unique_identifier(PublicKeyRsa::default())
        .build()
        .map_err(tpm_err("build SRK template", tcti))
}

fn hmac_key_template(tcti: &str) -> Result<Public> {
    // No sensitiveDataOrigin: the key value is supplied by us. `sign` makes it an HMAC key, which
    // TPM2_Unseal refuses; fixedTPM/fixedParent forbid duplication.
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_no_da(true)
        .build()
        .map_err(tpm_err("build HMAC key attributes", tcti))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(
            KeyedHashScheme::HMAC_SHA_256,
        ))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .map_err(tpm_err("build HMAC key template", tcti))
}

/// Returns the SRK, creating and persisting it at [`SRK_HANDLE`] if the TPM has none.
pub(crate) fn ensure_srk(context: &mut Context, tcti: &str) -> Result<KeyHandle> {
    if let Some(object) = find_persistent(context, SRK_HANDLE, tcti)? {
        return Ok(object.into());
    }
    let template = srk_template(tcti)?;
    let created = context
        .execute_with_nullauth_session(|ctx| {
            ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(tpm_err("create SRK", tcti))?;
    persist(context, created.key_handle, SRK_HANDLE, tcti)
}

/// Evicts whatever is persisted at `handle`, if anything (before storing a new key there).
pub(crate) fn remove_persistent(context: &mut Context, handle: u32, tcti: &str) -> Result<()> {
    let target = persistent(handle, tcti)?;
    if let Some(existing) = find_persistent(context, handle, tcti)? {
        context
            .execute_with_nullauth_session(|ctx| {
                ctx.evict_control(Provision::Owner, existing, target)
            })
            .map_err(tpm_err("remove previous key", tcti))?;
    }
    Ok(())
}

/// Persists the transient `object` at `handle` and flushes the transient copy.
pub(crate) fn persist(
    context: &mut Context,
    object: KeyHandle,
    handle: u32,
    tcti: &str,
) -> Result<KeyHandle> {
    let target = persistent(handle, tcti)?;
    let stored = context
        .execute_with_nullauth_session(|ctx| {
            ctx.evict_control(Provision::Owner, object.into(), target)
        })
        .map_err(tpm_err("persist object", tcti));
    let _ = context.flush_context(object.into());
    Ok(stored?.into())
}

/// Imports `key` (the raw bytes of the device's symmetric key) into the TPM as a persistent HMAC
/// key at `handle`, replacing whatever was there. The caller should erase its copy afterwards.
pub fn import_hmac_key(tcti: &str, handle: u32, key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > 128 {
        return Err(AgentError::TpmKey {
            handle,
            reason: format!("{} bytes (1..=128 allowed)", key.len()),
        });
    }
    persistent(handle, tcti)?;
    let mut context = open_context(tcti)?;
    let srk = ensure_srk(&mut context, tcti)?;
    remove_persistent(&mut context, handle, tcti)?;
    let template = hmac_key_template(tcti)?;
    let sensitive = SensitiveData::try_from(key.to_vec()).map_err(tpm_err("wrap key", tcti))?;
    let created = context
        .execute_with_nullauth_session(|ctx| {
            ctx.create(srk, template, None, Some(sensitive), None, None)
        })
        .map_err(tpm_err("create HMAC key", tcti))?;
    let loaded = context
        .execute_with_nullauth_session(|ctx| ctx.load(srk, created.out_private, created.out_public))
        .map_err(tpm_err("load HMAC key", tcti))?;
    persist(&mut context, loaded, handle, tcti).map(|_| ())
}

/// Computes HMAC-SHA256 with the key persisted at `handle` (one-shot helper).
pub fn hmac_with_persistent_key(
    context: &mut Context,
    tcti: &str,
    handle: u32,
    message: &[u8],
) -> Result<[u8; 32]> {
    let object = find_persistent(context, handle, tcti)?.ok_or_else(|| AgentError::TpmKey {
        handle,
        reason: "no key persisted at this handle".into(),
    })?;
    let buffer = MaxBuffer::try_from(message.to_vec()).map_err(tpm_err("wrap message", tcti))?;
    let digest = context
        .execute_with_nullauth_session(|ctx| ctx.hmac(object, buffer, HashingAlgorithm::Sha256))
        .map_err(tpm_err("HMAC", tcti))?;
    <[u8; 32]>::try_from(digest.value()).map_err(|_| AgentError::TpmKey {
        handle,
        reason: "TPM returned a digest that is not 32 bytes".into(),
    })
}

type Job = Box<dyn FnOnce(&mut Context, &str) + Send>;

/// A thread owning one ESAPI context (which is not `Send`); work is sent to it as closures.
pub struct TpmWorker {
    tcti: String,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for TpmWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmWorker")
            .field("tcti", &self.tcti)
            .finish()
    }
}

impl TpmWorker {
    /// Opens a context for `tcti` on a new thread.
    pub fn start(tcti: &str) -> Result<Self> {
        let (jobs, incoming) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
        let worker_tcti = tcti.to_string();
        std::thread::Builder::new()
            .name("tpm-worker".into())
            .spawn(move || {
                let mut context = match open_context(&worker_tcti) {
                    Ok(context) => {
                        let _ = ready_tx.send(Ok(()));
                        context
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                while let Ok(job) = incoming.recv() {
                    job(&mut context, &worker_tcti);
                }
            })
            .map_err(|_| AgentError::TpmWorkerStopped {
                tcti: tcti.to_string(),
            })?;
        ready_rx.recv().map_err(|_| AgentError::TpmWorkerStopped {
            tcti: tcti.to_string(),
        })??;
        Ok(Self {
            tcti: tcti.to_string(),
            jobs: Mutex::new(jobs),
        })
    }

    /// Runs `job` on the TPM thread and waits for its result.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Context, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let stopped = || AgentError::TpmWorkerStopped {
            tcti: self.tcti.clone(),
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |context, tcti| {
            let _ = reply.send(job(context, tcti));
        });
        self.jobs
            .lock()
            .map_err(|_| stopped())?
            .send(job)
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

/// A [`SasSigner`] whose key lives in the TPM. The agent holds only a handle.
#[derive(Debug)]
pub struct TpmHmacSigner {
    worker: TpmWorker,
    handle: u32,
}

impl TpmHmacSigner {
    /// Connects to the TPM and checks that a key is persisted at `handle`.
    pub fn open(tcti: &str, handle: u32) -> Result<Self> {
        let worker = TpmWorker::start(tcti)?;
        worker.run(move |context, tcti| {
            find_persistent(context, handle, tcti)?
                .map(|_| ())
                .ok_or_else(|| AgentError::TpmKey {
                    handle,
                    reason: "no key persisted at this handle".into(),
                })
        })?;
        Ok(Self { worker, handle })
    }
}

impl SasSigner for TpmHmacSigner {
    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32]> {
        let (handle, message) = (self.handle, message.to_vec());
        self.worker
            .run(move |context, tcti| hmac_with_persistent_key(context, tcti, handle, &message))
    }
}

/// [`import_hmac_key`] for a base64 key as found in connection strings and DPS enrollments.
pub fn import_base64_hmac_key(tcti: &str, handle: u32, key_base64: &str) -> Result<()> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_base64.trim())
        .map_err(|source| AgentError::DecodeKey {
            identity: format!("TPM handle {handle:#010x}"),
            source,
        })?;
    import_hmac_key(tcti, handle, &key)
}
