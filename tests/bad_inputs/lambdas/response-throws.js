function convert(scimUser, user) {
  scimUser.userName = user.missing.field;
}
