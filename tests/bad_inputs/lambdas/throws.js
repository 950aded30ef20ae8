function convert(user, options, scimUser) {
  throw new Error('no userName mapping');
}
