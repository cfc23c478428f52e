/*
 * The C control API (certemu.h) used as documented: options, named and unnamed CAs,
 * server names in UTF-8 and UTF-16, issuing and revoking, stop / crash / start with soft
 * recovery, disk loss, Windows paths mapped to host files, caller identity, interface
 * flags, the JSON report, and the last-error text.
 */
#include "common.h"

#include <pthread.h>

static void *fresh_thread(void *arg)
{
    char *msg = (char *)(uintptr_t)1;
    *(HRESULT *)arg = certemu_last_error(&msg);
    if (msg != NULL) {
        *(HRESULT *)arg = E_FAIL;
    }
    return NULL;
}

int main(void)
{
    /* Options and their defaults. */
    certemu_options o;
    memset(&o, 0xAB, sizeof o);
    REQUIRE_OK(certemu_options_init(&o));
    EXPECT(o.size == sizeof(certemu_options));
    EXPECT(o.records == 16 && o.seed == 1 && o.ca_name == NULL && o.edb_size == 0);
    EXPECT(o.log_capacity == 64 && o.reserved == 0);

    /* A named CA with a UTF-8 CA name. */
    certemu_ca *ca = NULL;
    o.ca_name = "Contoso \xC3\x9C" "bung CA"; /* "Contoso Übung CA" */
    o.records = 25;
    o.log_capacity = 5;
    o.seed = 42;
    REQUIRE_OK(certemu_ca_create("CONTOSO-CA1", &o, &ca));
    const char *name = NULL;
    const WCHAR *wname = NULL;
    REQUIRE_OK(certemu_ca_server_name(ca, &name));
    REQUIRE_OK(certemu_ca_server_name_w(ca, &wname));
    EXPECT(strcmp(name, "CONTOSO-CA1") == 0);
    EXPECT(wcmp(wname, u"CONTOSO-CA1") == 0);
    const char *again = NULL;
    REQUIRE_OK(certemu_ca_server_name(ca, &again));
    EXPECT(again == name); /* owned by the CA: the same storage every time */
    EXPECT_REPORT(ca, "ca_name", "\"Contoso \xC3\x9C" "bung CA\"");
    EXPECT_REPORT(ca, "server_name", "\"CONTOSO-CA1\"");
    EXPECT_REPORT(ca, "dns_name", "\"contoso-ca1.emu.test\"");
    EXPECT(report_num(ca, "record_count") == 25);
    EXPECT_REPORT(ca, "service", "\"running\"");

    /* Names are unique in the process, case-insensitively; NULL picks a fresh one. */
    certemu_ca *dup = (certemu_ca *)(uintptr_t)1;
    EXPECT_HR(CERTEMU_E_ALREADY_EXISTS, certemu_ca_create("contoso-ca1", NULL, &dup));
    EXPECT(dup == NULL);
    EXPECT_HR(CERTEMU_E_ALREADY_EXISTS, certemu_ca_create("localhost", NULL, &dup));
    certemu_ca *a = NULL, *b = NULL;
    REQUIRE_OK(certemu_ca_create(NULL, NULL, &a));
    REQUIRE_OK(certemu_ca_create(NULL, NULL, &b));
    const char *na = NULL, *nb = NULL;
    REQUIRE_OK(certemu_ca_server_name(a, &na));
    REQUIRE_OK(certemu_ca_server_name(b, &nb));
    EXPECT(strcmp(na, nb) != 0);
    EXPECT(report_num(a, "record_count") == 16); /* defaults */
    EXPECT_OK(certemu_ca_destroy(b));
    EXPECT_OK(certemu_ca_destroy(a));

    /* The CA works: issue and revoke are logged transactions. */
    EXPECT_OK(certemu_ca_issue(ca, 12));
    EXPECT_OK(certemu_ca_issue(ca, 0));
    EXPECT_OK(certemu_ca_revoke(ca, 1));
    EXPECT_OK(certemu_ca_revoke(ca, 37));
    EXPECT_HR(E_INVALIDARG, certemu_ca_revoke(ca, 1));                  /* already revoked */
    EXPECT_HR(CERTEMU_E_FILE_NOT_FOUND, certemu_ca_revoke(ca, 38));     /* no such request */
    EXPECT(report_num(ca, "record_count") == 37);
    EXPECT(report_num(ca, "revoked_count") == 2);
    EXPECT(report_num(ca, "last_request_id") == 37);
    EXPECT(report_num(ca, "current_generation") >= 3); /* 5 transactions per generation */

    /* A crash loses nothing that was logged: the next start replays the logs. */
    EXPECT_OK(certemu_ca_crash(ca));
    EXPECT_REPORT(ca, "service", "\"stopped\"");
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, certemu_ca_issue(ca, 1));
    EXPECT_OK(certemu_ca_start(ca));
    EXPECT_REPORT(ca, "hard", "false");
    EXPECT(report_num(ca, "record_count") == 37);
    EXPECT(report_num(ca, "revoked_count") == 2);
    EXPECT_HR(E_INVALIDARG, certemu_ca_start(ca)); /* already running */

    /* A clean stop and start. */
    EXPECT_OK(certemu_ca_stop(ca));
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, certemu_ca_stop(ca));
    EXPECT_OK(certemu_ca_start(ca));
    EXPECT(report_num(ca, "record_count") == 37);

    /* Windows paths on the machine map into its root; others are refused. */
    char *host = NULL;
    EXPECT_OK(certemu_ca_host_path(ca, "C:\\Windows\\System32\\CertLog", &host));
    REQUIRE(host != NULL);
    struct stat st;
    EXPECT(stat(host, &st) == 0 && S_ISDIR(st.st_mode));
    char *edb = path_join(host, "contoso \xC3\xBC" "bung ca.edb"); /* names map lowercased */
    certemu_free_string(host);
    char *via_unc = NULL;
    EXPECT_OK(certemu_ca_host_path(ca, "\\\\contoso-ca1.emu.test\\C$\\Windows\\System32\\CertLog\\"
                                       "Contoso \xC3\x9C" "bung CA.edb", &via_unc));
    EXPECT(via_unc != NULL && strcmp(via_unc, edb) == 0);
    EXPECT(file_size(edb) > 0);
    certemu_free_string(via_unc);
    host = (char *)(uintptr_t)1;
    EXPECT_HR(E_ACCESSDENIED, certemu_ca_host_path(ca, "C:\\..\\..\\etc\\passwd", &host));
    EXPECT(host == NULL);
    EXPECT_HR(CERTEMU_E_BAD_NETPATH, certemu_ca_host_path(ca, "\\\\OTHER\\C$\\x", &host));
    EXPECT_HR(CERTEMU_E_BAD_NETPATH, certemu_ca_host_path(ca, "\\\\CONTOSO-CA1\\share\\x", &host));
    EXPECT_HR(CERTEMU_E_BAD_PATHNAME, certemu_ca_host_path(ca, "relative\\x", &host));
    EXPECT_HR(CERTEMU_E_INVALID_NAME, certemu_ca_host_path(ca, "C:\\Windows\\NUL", &host));
    EXPECT_HR(CERTEMU_E_INVALID_NAME, certemu_ca_host_path(ca, "C:\\file.txt:stream", &host));

    /* Disk loss: only with the service stopped. */
    EXPECT_HR(CERTEMU_E_SHARING_VIOLATION, certemu_ca_wipe_files(ca));
    EXPECT_OK(certemu_ca_stop(ca));
    EXPECT_OK(certemu_ca_wipe_files(ca));
    EXPECT(file_size(edb) == -1);
    EXPECT_REPORT(ca, "log_generations", "[]");
    /* Nothing to start from. */
    HRESULT hr = certemu_ca_start(ca);
    EXPECT(FAILED(hr) && (((uint32_t)hr) >> 16) == 0xC800); /* an ESE error */
    char *json = report(ca);
    char expect_start[64];
    snprintf(expect_start, sizeof expect_start, "\"last_start\":{\"hr\":%" PRId32 "}", (int32_t)hr);
    EXPECT(strstr(json, expect_start) != NULL);
    certemu_free_string(json);

    /* Identity and interface flags show in the report. */
    EXPECT_OK(certemu_ca_set_identity(ca, FALSE, TRUE, FALSE, TRUE));
    EXPECT_REPORT(ca, "identity",
                  "{\"backup_privilege\":false,\"restore_privilege\":true,\"local_admin\":false,"
                  "\"remote\":true}");
    EXPECT_OK(certemu_ca_set_identity(ca, 2, -1, 7, 0)); /* any non-zero BOOL is TRUE */
    EXPECT_REPORT(ca, "identity",
                  "{\"backup_privilege\":true,\"restore_privilege\":true,\"local_admin\":true,"
                  "\"remote\":false}");
    EXPECT(report_num(ca, "interface_flags") == IF_DEFAULT);
    EXPECT_OK(certemu_ca_set_interface_flags(ca, 0));
    EXPECT(report_num(ca, "interface_flags") == 0);

    /* The last error: the text of the last failure on this thread, with its HRESULT;
     * a thread that has seen no failure has none. */
    EXPECT_HR(E_POINTER, CertSrvIsServerOnlineW(u"CONTOSO-CA1", NULL));
    char *msg = NULL;
    EXPECT_OK(certemu_last_error(&msg));
    EXPECT(msg != NULL && strncmp(msg, "0x80004003 E_POINTER: CertSrvIsServerOnlineW", 44) == 0);
    printf("last error: %s\n", msg != NULL ? msg : "(none)");
    certemu_free_string(msg);
    HRESULT fresh = E_FAIL;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, fresh_thread, &fresh) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
    EXPECT_HR(S_FALSE, fresh);

    /* The JSON is one line of well-formed members. */
    json = report(ca);
    EXPECT(json[0] == '{' && json[strlen(json) - 1] == '}' && strchr(json, '\n') == NULL);
    printf("%s\n", json);
    certemu_free_string(json);

    free(edb);
    EXPECT_OK(certemu_ca_destroy(ca));
    return finish("certemu_api");
}
