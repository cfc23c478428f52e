/*
 * Robustness of the C control API: every bad argument gets an HRESULT, never a crash.
 *   - NULL for every pointer parameter (E_POINTER; a NULL certemu_ca is E_HANDLE);
 *   - destroyed and forged certemu_ca pointers (E_HANDLE), destroy twice;
 *   - certemu_free_string twice, on foreign pointers, on strings the CA owns;
 *   - options of the wrong size, reserved bits, out-of-range counts, bad UTF-8, bad names.
 */
#include "common.h"

/* Every function taking a certemu_ca, with `ca`; all must return `want`. */
static void all_ca_calls(certemu_ca *ca, HRESULT want, const char *what)
{
    int before = g_failures;
    const char *name = (const char *)(uintptr_t)1;
    const WCHAR *wname = (const WCHAR *)(uintptr_t)1;
    char *out = (char *)(uintptr_t)1;
    EXPECT_HR(want, certemu_ca_server_name(ca, &name));
    EXPECT(name == NULL);
    EXPECT_HR(want, certemu_ca_server_name_w(ca, &wname));
    EXPECT(wname == NULL);
    EXPECT_HR(want, certemu_ca_issue(ca, 1));
    EXPECT_HR(want, certemu_ca_revoke(ca, 1));
    EXPECT_HR(want, certemu_ca_stop(ca));
    EXPECT_HR(want, certemu_ca_crash(ca));
    EXPECT_HR(want, certemu_ca_start(ca));
    EXPECT_HR(want, certemu_ca_wipe_files(ca));
    EXPECT_HR(want, certemu_ca_host_path(ca, "C:\\Windows", &out));
    EXPECT(out == NULL);
    EXPECT_HR(want, certemu_ca_set_identity(ca, TRUE, TRUE, TRUE, FALSE));
    EXPECT_HR(want, certemu_ca_set_interface_flags(ca, IF_DEFAULT));
    out = (char *)(uintptr_t)1;
    EXPECT_HR(want, certemu_ca_report(ca, &out));
    EXPECT(out == NULL);
    EXPECT_HR(ca == NULL ? S_FALSE : want, certemu_ca_destroy(ca));
    if (g_failures != before) {
        fprintf(stderr, "  ... with %s certemu_ca %p\n", what, (void *)ca);
    }
}

int main(void)
{
    certemu_options o;
    certemu_ca *ca = (certemu_ca *)(uintptr_t)1;

    /* ---- NULL pointers ---- */
    EXPECT_HR(E_POINTER, certemu_options_init(NULL));
    EXPECT_HR(E_POINTER, certemu_ca_create(NULL, NULL, NULL));
    EXPECT_HR(E_POINTER, certemu_ca_create("SOMEHOST", NULL, NULL));
    EXPECT_HR(E_POINTER, certemu_last_error(NULL));
    all_ca_calls(NULL, E_HANDLE, "a NULL");
    EXPECT_HR(S_FALSE, certemu_ca_destroy(NULL)); /* NULL: nothing to destroy */
    EXPECT_HR(S_FALSE, certemu_free_string(NULL));

    const WCHAR *server;
    ca = make_ca(3, 64, &server);
    EXPECT_HR(E_POINTER, certemu_ca_server_name(ca, NULL));
    EXPECT_HR(E_POINTER, certemu_ca_server_name_w(ca, NULL));
    char *out = (char *)(uintptr_t)1;
    EXPECT_HR(E_POINTER, certemu_ca_host_path(ca, NULL, &out));
    EXPECT(out == NULL);
    EXPECT_HR(E_POINTER, certemu_ca_host_path(ca, "C:\\Windows", NULL));
    EXPECT_HR(E_POINTER, certemu_ca_report(ca, NULL));

    /* A NULL msg fails without touching the last error. */
    EXPECT_HR(E_POINTER, certemu_ca_report(ca, NULL));
    EXPECT_HR(E_POINTER, certemu_last_error(NULL));
    char *msg = NULL;
    EXPECT_OK(certemu_last_error(&msg));
    EXPECT(msg != NULL && strstr(msg, "certemu_ca_report") != NULL && strstr(msg, "json") != NULL);
    certemu_free_string(msg);

    /* ---- forged and destroyed CAs ---- */
    int local = 0;
    all_ca_calls((certemu_ca *)&local, E_HANDLE, "a stack pointer as");
    all_ca_calls((certemu_ca *)(uintptr_t)1, E_HANDLE, "a forged (1)");
    all_ca_calls((certemu_ca *)UINTPTR_MAX, E_HANDLE, "an all-ones");
    all_ca_calls((certemu_ca *)((char *)ca + 8), E_HANDLE, "an interior");
    void *heap = xmalloc(256);
    all_ca_calls((certemu_ca *)heap, E_HANDLE, "a heap pointer as");
    free(heap);
    EXPECT(report_num(ca, "record_count") == 3); /* the real CA is untouched */
    certemu_ca *gone = make_ca(1, 64, &server);
    EXPECT_OK(certemu_ca_destroy(gone));
    all_ca_calls(gone, E_HANDLE, "a destroyed");

    /* ---- strings ---- */
    char *json = report(ca);
    EXPECT_OK(certemu_free_string(json));
    EXPECT_HR(E_INVALIDARG, certemu_free_string(json)); /* twice */
    json = report(ca);
    EXPECT_HR(E_INVALIDARG, certemu_free_string(json + 1)); /* inside a live string */
    EXPECT(json[0] == '{');                                 /* untouched */
    EXPECT_OK(certemu_free_string(json));
    char mine[] = "not from certemu";
    EXPECT_HR(E_INVALIDARG, certemu_free_string(mine));
    char *heap_str = (char *)xmalloc(8);
    EXPECT_HR(E_INVALIDARG, certemu_free_string(heap_str));
    free(heap_str); /* still the caller's */
    const char *owned = NULL;
    REQUIRE_OK(certemu_ca_server_name(ca, &owned));
    EXPECT_HR(E_INVALIDARG, certemu_free_string((char *)(uintptr_t)owned)); /* owned by the CA */
    EXPECT(owned[0] != 0);
    msg = NULL;
    EXPECT_OK(certemu_last_error(&msg));
    EXPECT(msg != NULL && strstr(msg, "certemu_free_string") != NULL);
    certemu_free_string(msg);

    /* ---- options ---- */
    REQUIRE_OK(certemu_options_init(&o));
    certemu_ca *bad = (certemu_ca *)(uintptr_t)1;
    o.size = 0;
    EXPECT_HR(E_INVALIDARG, certemu_ca_create(NULL, &o, &bad));
    EXPECT(bad == NULL);
    o.size = (uint32_t)sizeof o - 1;
    EXPECT_HR(E_INVALIDARG, certemu_ca_create(NULL, &o, &bad));
    o.size = (uint32_t)sizeof o + 8;
    EXPECT_HR(E_INVALIDARG, certemu_ca_create(NULL, &o, &bad));
    REQUIRE_OK(certemu_options_init(&o));
    o.reserved = 1;
    EXPECT_HR(E_INVALIDARG, certemu_ca_create(NULL, &o, &bad));
    REQUIRE_OK(certemu_options_init(&o));
    o.records = CERTEMU_MAX_RECORDS + 1;
    EXPECT_HR(E_INVALIDARG, certemu_ca_create(NULL, &o, &bad));
    o.records = UINT32_MAX;
    EXPECT_HR(E_INVALIDARG, certemu_ca_create(NULL, &o, &bad));
    REQUIRE_OK(certemu_options_init(&o));
    o.log_capacity = 0;
    EXPECT_HR(E_INVALIDARG, certemu_ca_create(NULL, &o, &bad));
    REQUIRE_OK(certemu_options_init(&o));
    o.ca_name = "";
    EXPECT_HR(E_INVALIDARG, certemu_ca_create(NULL, &o, &bad));
    o.ca_name = "\xFF\xFE not UTF-8";
    EXPECT_HR(E_INVALIDARG, certemu_ca_create(NULL, &o, &bad));
    o.ca_name = "CON"; /* CON.edb: a device name */
    EXPECT_HR(CERTEMU_E_INVALID_NAME, certemu_ca_create(NULL, &o, &bad));
    o.ca_name = "Bad?Name";
    EXPECT_HR(CERTEMU_E_INVALID_NAME, certemu_ca_create(NULL, &o, &bad));
    EXPECT(bad == NULL);

    /* ---- server names ---- */
    EXPECT_HR(E_INVALIDARG, certemu_ca_create("", NULL, &bad));
    EXPECT_HR(E_INVALIDARG, certemu_ca_create("HOST\\CA", NULL, &bad));
    EXPECT_HR(E_INVALIDARG, certemu_ca_create("a/b", NULL, &bad));
    EXPECT_HR(E_INVALIDARG, certemu_ca_create("\xC3\x28", NULL, &bad)); /* bad UTF-8 */
    EXPECT_HR(CERTEMU_E_ALREADY_EXISTS, certemu_ca_create("LOCALHOST", NULL, &bad));
    EXPECT(bad == NULL);

    /* ---- values ---- */
    EXPECT_HR(E_INVALIDARG, certemu_ca_issue(ca, CERTEMU_MAX_ISSUE + 1));
    EXPECT_HR(E_INVALIDARG, certemu_ca_issue(ca, UINT32_MAX));
    EXPECT_HR(CERTEMU_E_FILE_NOT_FOUND, certemu_ca_revoke(ca, 0));
    EXPECT_HR(CERTEMU_E_FILE_NOT_FOUND, certemu_ca_revoke(ca, UINT32_MAX));
    EXPECT_HR(E_INVALIDARG, certemu_ca_host_path(ca, "C:\\\xFF", &out));
    EXPECT_OK(certemu_ca_set_interface_flags(ca, UINT32_MAX)); /* any DWORD is stored */
    EXPECT(report_num(ca, "interface_flags") == (long long)UINT32_MAX);
    EXPECT(report_num(ca, "record_count") == 3);
    EXPECT(report_num(ca, "sessions_open") == 0);

    EXPECT_OK(certemu_ca_destroy(ca));
    EXPECT_HR(E_HANDLE, certemu_ca_destroy(ca)); /* twice */
    return finish("robustness_certemu");
}
