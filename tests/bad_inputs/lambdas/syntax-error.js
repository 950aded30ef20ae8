function convert(user, options, scimUser) {
  user.username = scimUser.userName
  if (
}
