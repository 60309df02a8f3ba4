//! `stowage certs ...`: generate certificates locally, or install them into a cluster.

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use k8s_openapi::{
    ByteString,
    api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Secret},
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use stowage_certs::{CertPaths, CertificateAuthority, GenerateOptions, generate_to_dir};

use crate::cli::{CertsGenerateArgs, CertsInstallArgs};

/// `stowage certs generate`: a CA and a serving certificate in a directory; prints the caBundle.
pub(crate) fn generate(args: &CertsGenerateArgs) -> anyhow::Result<ExitCode> {
    let mut opts = GenerateOptions::default();
    if !args.dns.is_empty() || !args.ip.is_empty() {
        opts.dns_names.clone_from(&args.dns);
        opts.ip_addresses.clone_from(&args.ip);
    }
    if let Some(cn) = opts.dns_names.first() {
        opts.common_name.clone_from(cn);
    }
    opts.validity = Duration::from_secs(u64::from(args.days) * 86_400);
    let generated =
        generate_to_dir(&opts, &args.out).with_context(|| format!("generating into {}", args.out.display()))?;
    eprintln!(
        "wrote {}, {}, {}, {} (DNS: {}; IP: {})",
        generated.ca_cert.display(),
        generated.ca_key.display(),
        generated.tls_cert.display(),
        generated.tls_key.display(),
        if opts.dns_names.is_empty() { "-".to_owned() } else { opts.dns_names.join(", ") },
        if opts.ip_addresses.is_empty() {
            "-".to_owned()
        } else {
            opts.ip_addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        },
    );
    eprintln!("caBundle for the MutatingWebhookConfiguration:");
    println!("{}", generated.ca_bundle_base64);
    Ok(ExitCode::SUCCESS)
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// `stowage certs install`: keeps a CA Secret, a serving-certificate Secret and the webhook
/// configuration's caBundle in agreement, renewing the serving certificate before it expires.
/// Safe to run repeatedly (it is the body of the certs Job and its renewal CronJob).
///
/// Both Secrets must exist: the install manifests create them empty, so the Job's identity
/// needs only `get`/`update` on those two names and never `create` (which RBAC cannot narrow to
/// a name). A missing Secret is an error that names it.
pub(crate) async fn install(args: &CertsInstallArgs) -> anyhow::Result<ExitCode> {
    let client = crate::kube_client::client(args.kubeconfig.as_deref()).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &args.namespace);

    // 1. The CA: reuse the stored one; fill the empty Secret once.
    let stored = existing(&secrets, &args.namespace, &args.ca_secret).await?;
    let ca = match (entry(&stored, CA_CERT), entry(&stored, CA_KEY)) {
        (Some(cert), Some(key)) => CertificateAuthority::from_pem(&cert?, &key?)
            .with_context(|| format!("Secret {}/{} does not hold a usable CA", args.namespace, args.ca_secret))?,
        (None, None) => {
            let ca = CertificateAuthority::generate(&GenerateOptions::default()).context("generating the CA")?;
            write(&secrets, stored, [(CA_CERT, ca.cert_pem().to_owned()), (CA_KEY, ca.key_pem())]).await?;
            eprintln!("wrote a new CA into Secret {}/{}", args.namespace, args.ca_secret);
            ca
        }
        (Some(_), None) | (None, Some(_)) => anyhow::bail!(
            "Secret {}/{} holds only one of {CA_CERT} and {CA_KEY}: empty it to have a new CA generated, or \
             complete it",
            args.namespace,
            args.ca_secret
        ),
    };

    // 2. The serving certificate: keep it while it is ours, names the service and is fresh.
    let opts = GenerateOptions {
        validity: Duration::from_secs(u64::from(args.days) * 86_400),
        ..GenerateOptions::for_service(&args.service, &args.namespace)
    };
    let stored = existing(&secrets, &args.namespace, &args.secret).await?;
    let renew_reason = if [TLS_CERT, TLS_KEY, CA_CERT].iter().all(|k| entry(&stored, k).is_none()) {
        Some("empty".to_owned())
    } else {
        serving_cert_problem(&stored, &ca, &opts, args.renew_before)
    };
    if let Some(reason) = renew_reason {
        let pair = ca.issue_server_cert(&opts).context("issuing the serving certificate")?;
        write(
            &secrets,
            stored,
            [(TLS_CERT, pair.cert_pem.clone()), (TLS_KEY, pair.key_pem.clone()), (CA_CERT, ca.cert_pem().to_owned())],
        )
        .await?;
        eprintln!("issued serving certificate into Secret {}/{} ({reason})", args.namespace, args.secret);
    } else {
        eprintln!("serving certificate in Secret {}/{} is current", args.namespace, args.secret);
    }

    // 3. The caBundle of every webhook of the configuration.
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client);
    let mwc = configs
        .get(&args.webhook_configuration)
        .await
        .with_context(|| format!("reading MutatingWebhookConfiguration {}", args.webhook_configuration))?;
    let bundle = ByteString(ca.cert_pem().as_bytes().to_vec());
    let mut ops = Vec::new();
    for (i, webhook) in mwc.webhooks.iter().flatten().enumerate() {
        if webhook.client_config.ca_bundle.as_ref() != Some(&bundle) {
            // `test` guards against the list having changed since it was read.
            ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook.name}));
            ops.push(serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}));
        }
    }
    if ops.is_empty() {
        eprintln!("caBundle of MutatingWebhookConfiguration {} is current", args.webhook_configuration);
    } else {
        let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))?;
        configs
            .patch(&args.webhook_configuration, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .with_context(|| format!("patching the caBundle of {}", args.webhook_configuration))?;
        eprintln!("wrote caBundle into MutatingWebhookConfiguration {}", args.webhook_configuration);
    }
    Ok(ExitCode::SUCCESS)
}

/// The Secret `name`, which the install manifests create; an error naming it when it is absent.
async fn existing(secrets: &Api<Secret>, namespace: &str, name: &str) -> anyhow::Result<Secret> {
    secrets.get_opt(name).await.with_context(|| format!("reading Secret {namespace}/{name}"))?.with_context(|| {
        format!(
            "Secret {namespace}/{name} does not exist. `stowage certs install` writes into Secrets that the \
             install manifests create empty (the stowage-certs overlay, or the Helm chart with \
             certificates.mode=stowage-certs) and never creates one: apply the manifests, or create it with \
             `kubectl create secret generic {name} --namespace={namespace}`"
        )
    })
}

/// Replaces the data of `stored` with `data` (an update conditional on the version read, so a
/// concurrent run fails instead of being overwritten), keeping its type, labels and annotations.
async fn write<const N: usize>(
    secrets: &Api<Secret>,
    mut stored: Secret,
    data: [(&str, String); N],
) -> anyhow::Result<()> {
    let name = stored.metadata.name.clone().unwrap_or_default();
    stored.data = Some(data.into_iter().map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes()))).collect());
    stored.string_data = None;
    stored.metadata.managed_fields = None;
    secrets.replace(&name, &PostParams::default(), &stored).await.with_context(|| {
        format!("updating Secret {}/{name}", stored.metadata.namespace.as_deref().unwrap_or_default())
    })?;
    Ok(())
}

/// Entry `key` of a Secret as text; `None` when absent or empty (as the manifests create it).
fn entry(secret: &Secret, key: &str) -> Option<anyhow::Result<String>> {
    let bytes = secret.data.as_ref()?.get(key).filter(|b| !b.0.is_empty())?;
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    Some(String::from_utf8(bytes.0.clone()).with_context(|| format!("Secret {name}: {key} is not text")))
}

fn secret_text(secret: &Secret, key: &str) -> anyhow::Result<String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    entry(secret, key).with_context(|| format!("Secret {name} has no {key}"))?
}

/// Why the stored serving certificate must be replaced, or `None` when it is fine.
fn serving_cert_problem(
    secret: &Secret,
    ca: &CertificateAuthority,
    opts: &GenerateOptions,
    renew_before: Duration,
) -> Option<String> {
    let (Ok(cert), Ok(key), Ok(stored_ca)) =
        (secret_text(secret, TLS_CERT), secret_text(secret, TLS_KEY), secret_text(secret, CA_CERT))
    else {
        return Some("incomplete".to_owned());
    };
    if stored_ca.trim() != ca.cert_pem().trim() {
        return Some("issued by another CA".to_owned());
    }
    let loaded =
        match stowage_certs::load::parse_pair(&CertPaths::new(TLS_CERT, TLS_KEY), cert.as_bytes(), key.as_bytes()) {
            Ok(l) => l,
            Err(e) => return Some(format!("unusable: {e}")),
        };
    if let Some(missing) = opts.dns_names.iter().find(|n| !loaded.info.sans.iter().any(|s| s.ends_with(n.as_str()))) {
        return Some(format!("does not name {missing}"));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let left = loaded.info.not_after.saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
    if left < i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX) {
        return Some(format!("expires in {} day(s)", left / 86_400));
    }
    None
}
