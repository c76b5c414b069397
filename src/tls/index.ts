/**
 * TLS material for the relay: self-signed certificate generation, PEM loading and a
 * reloadable certificate store.
 * @module
 */

export { type GeneratedCertificate, type GenerateOptions, generateCertificate, MAX_VALIDITY_DAYS } from "./generate.ts";
export { type CertificateEntry, CertificateError, loadCertificates } from "./load.ts";
export { fingerprint, pemBlocks, toPem } from "./pem.ts";
export { CertificateStore, type ReloadResult, type TlsSettings } from "./store.ts";
