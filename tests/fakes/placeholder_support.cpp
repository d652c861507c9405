// Test-support library anchor; fakes live beside this file.
namespace mailprobe::testing {}
