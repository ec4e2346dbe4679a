"""Tools for tests, benchmarks and scripts (real servers, WHIP/WHEP clients, text in pictures);
never imported by the product's packages."""
