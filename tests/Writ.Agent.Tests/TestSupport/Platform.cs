// The agent's peer tracking and workload attestation read Linux kernel evidence; so do these tests.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
