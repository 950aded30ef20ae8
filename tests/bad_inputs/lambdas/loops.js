function convert(user, options, scimUser) {
  while (true) {}
}
