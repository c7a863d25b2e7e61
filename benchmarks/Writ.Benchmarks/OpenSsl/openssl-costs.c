/*
 * Where X.509-SVID issuance time goes inside OpenSSL 3, without .NET in between.
 * Times, per call: parsing a P-256 leaf certificate (d2i_X509, which decodes its public key), parsing a
 * SubjectPublicKeyInfo (d2i_PUBKEY), importing a point with EVP_PKEY_fromdata, the legacy EC_KEY steps .NET's
 * ImportSubjectPublicKeyInfo takes (EC_KEY_new_by_curve_name, EC_KEY_check_key, export to the provider), and raw
 * ECDSA P-256 sign and verify of a 450-byte message.
 *
 *   gcc -O2 -Wno-deprecated-declarations openssl-costs.c -o openssl-costs -lcrypto && ./openssl-costs
 */
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
#define TIME(name, n, ...) do { double t0 = now(); for (int i = 0; i < (n); i++) { __VA_ARGS__; } \
    printf("%-52s %8.1f us\n", name, (now() - t0) / (n) * 1e6); } while (0)

int main(void)
{
    const int n = 3000;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O", MBSTRING_ASC, (const unsigned char *)"Writ", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    unsigned char *cert = NULL, *spki = NULL;
    int certLen = i2d_X509(x, &cert), spkiLen = i2d_PUBKEY(key, &spki);
    unsigned char point[65]; size_t pointLen = 0;
    EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &pointLen);
    unsigned char msg[450] = {0}, sig[80]; size_t sigLen = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key);
    EVP_DigestSign(md, sig, &sigLen, msg, sizeof msg);

    printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
    TIME("d2i_X509 (certificate parse, as X509Certificate2 load)", n,
        { const unsigned char *p = cert; X509_free(d2i_X509(NULL, &p, certLen)); });
    TIME("d2i_PUBKEY (SubjectPublicKeyInfo parse)", n,
        { const unsigned char *p = spki; EVP_PKEY_free(d2i_PUBKEY(NULL, &p, spkiLen)); });
    EVP_PKEY_CTX *fc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    TIME("EVP_PKEY_fromdata (point import, Writ's CSR path)", n, {
        OSSL_PARAM ps[3] = { OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0),
                             OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, pointLen), OSSL_PARAM_construct_end() };
        EVP_PKEY *k = NULL; EVP_PKEY_fromdata_init(fc); EVP_PKEY_fromdata(fc, &k, EVP_PKEY_PUBLIC_KEY, ps); EVP_PKEY_free(k); });
    TIME("EC_KEY_new_by_curve_name (legacy import, step 1)", n,
        { EC_KEY_free(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1)); });
    EC_KEY *ec = EVP_PKEY_get1_EC_KEY(key);
    TIME("EC_KEY_check_key (legacy import, step 2)", n, { EC_KEY_check_key(ec); });
    TIME("legacy EC_KEY -> provider export on first use", n, {
        EVP_PKEY *k = EVP_PKEY_new(); EVP_PKEY_assign_EC_KEY(k, EC_KEY_dup(ec));
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL); EVP_PKEY_verify_init(c); EVP_PKEY_CTX_free(c); EVP_PKEY_free(k); });
    TIME("ECDSA P-256 sign (SHA-256 of 450 bytes + sign)", n,
        { size_t l = sizeof sig; EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key); EVP_DigestSign(md, sig, &l, msg, sizeof msg); });
    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key);
    sigLen = sizeof sig;
    EVP_DigestSign(md, sig, &sigLen, msg, sizeof msg);
    TIME("ECDSA P-256 verify (SHA-256 of 450 bytes + verify)", n,
        { EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key); if (EVP_DigestVerify(md, sig, sigLen, msg, sizeof msg) != 1) return 1; });
    return 0;
}
