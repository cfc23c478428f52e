/*
 * CertSrvIsServerOnlineW, as in its reference page's example: resolve the function
 * through its FN typedef, call it with a server name and a BOOL, print "Online" or
 * "Suspended" (spec §5.1). Then the states the emulator models.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(4, 64, &wszServer);
    FNCERTSRVISSERVERONLINEW *pfnIsServerOnline = CertSrvIsServerOnlineW;

    /* The documented pattern. */
    BOOL bOnline = FALSE;
    HRESULT hr = pfnIsServerOnline(wszServer, &bOnline);
    if (FAILED(hr)) {
        printf("Failed pfnIsServerOnline call [%" PRIx32 "]\n", (uint32_t)hr);
    } else {
        printf("Cert Server Online -> %s\n", bOnline ? "Online" : "Suspended");
    }
    EXPECT_HR(S_OK, hr);
    EXPECT(bOnline == TRUE);

    /* The generic name, the DNS name and a config string "HOST\CA name" also work. */
    bOnline = FALSE;
    EXPECT_OK(CertSrvIsServerOnline(wszServer, &bOnline));
    EXPECT(bOnline == TRUE);
    char *json = report(ca);
    const char *dns = strstr(json, "\"dns_name\":\"");
    REQUIRE(dns != NULL);
    dns += strlen("\"dns_name\":\"");
    char dns_name[256];
    size_t n = (size_t)(strchr(dns, '"') - dns);
    REQUIRE(n < sizeof dns_name);
    memcpy(dns_name, dns, n);
    dns_name[n] = 0;
    certemu_free_string(json);
    WCHAR *wdns = w_from_utf8(dns_name);
    EXPECT_OK(CertSrvIsServerOnlineW(wdns, &bOnline));
    free(wdns);
    const char *name = NULL;
    REQUIRE_OK(certemu_ca_server_name(ca, &name));
    char config[512];
    snprintf(config, sizeof config, "%s\\Emu Issuing CA", name);
    WCHAR *wconfig = w_from_utf8(config);
    EXPECT_OK(CertSrvIsServerOnlineW(wconfig, &bOnline));
    free(wconfig);
    snprintf(config, sizeof config, "%s\\Some Other CA", name);
    wconfig = w_from_utf8(config);
    EXPECT_HR(CERTEMU_E_FILE_NOT_FOUND, CertSrvIsServerOnlineW(wconfig, &bOnline));
    free(wconfig);

    /* "This function will fail if Certificate Services is not running." */
    REQUIRE_OK(certemu_ca_stop(ca));
    bOnline = TRUE;
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, pfnIsServerOnline(wszServer, &bOnline));
    EXPECT(bOnline == FALSE); /* the out-parameter is defined even on failure */
    REQUIRE_OK(certemu_ca_start(ca));
    EXPECT_OK(pfnIsServerOnline(wszServer, &bOnline));
    EXPECT(bOnline == TRUE);

    /* A server nobody created. */
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, pfnIsServerOnline(u"NO-SUCH-HOST-X", &bOnline));

    /* After destroy the name is unknown again. */
    WCHAR *gone = w_from_utf8(name);
    EXPECT_OK(certemu_ca_destroy(ca));
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, pfnIsServerOnline(gone, &bOnline));
    free(gone);
    return finish("sample_is_server_online");
}
