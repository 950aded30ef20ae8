function convert(user, options, scimUser) {
  return convert(user, options, scimUser);
}
