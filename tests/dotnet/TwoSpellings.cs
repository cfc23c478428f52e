// One process, two spellings of the library: the CA is created through "Certadm.dll"
// (the certemu_* API, UTF-8) and looked up through "CERTADM.dll" (CertSrvIsServerOnlineW,
// UTF-16). With the install step's links both names are one library to the loader, so the
// second call finds the CA (S_OK); with two copies of the file they are two libraries,
// each with its own emulator, and the second call does not (0x800706BA). README, "C# and
// PowerShell on Linux".
//
// Usage: TwoSpellings.exe NAME   Prints the two HRESULTs.

using System;
using System.Runtime.InteropServices;

static class TwoSpellings
{
    [DllImport("Certadm.dll", CharSet = CharSet.Ansi)]
    static extern int certemu_ca_create(string server_name, IntPtr opts, out IntPtr ca);

    [DllImport("CERTADM.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
    static extern int CertSrvIsServerOnlineW(string pwszServerName, out int pfServerOnline);

    static int Main(string[] args)
    {
        IntPtr ca;
        int online;
        Console.WriteLine("certemu_ca_create 0x{0:X8}", certemu_ca_create(args[0], IntPtr.Zero, out ca));
        Console.WriteLine("CertSrvIsServerOnlineW 0x{0:X8}", CertSrvIsServerOnlineW(args[0], out online));
        return 0;
    }
}
